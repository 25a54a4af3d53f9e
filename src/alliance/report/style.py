"""One figure style for every plot: seaborn, colour-blind-safe, readable in greyscale."""

from __future__ import annotations

# No backend is forced: scripts without a display get Agg from matplotlib itself, and Jupyter
# keeps its inline backend, so that a notebook shows the figures it draws.
import matplotlib.pyplot as plt
import seaborn as sns

PALETTE = "colorblind"
# Markers and line styles carry the same information as colour, for greyscale printing.
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
LINESTYLES = ["-", "--", ":", "-."]
SEQUENTIAL = "cividis"


def apply_style() -> None:
    """Set the project's plotting defaults (fonts, palette, deterministic output)."""
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "savefig.bbox": "tight",
        "font.family": "DejaVu Sans",
        "svg.hashsalt": "alliance",
        "pdf.fonttype": 42,
        "axes.titleweight": "bold",
    })


def new_figure(width: float = 6.5, height: float = 4.0, **kwargs):
    apply_style()
    return plt.subplots(figsize=(width, height), **kwargs)


def close(fig) -> None:
    plt.close(fig)
