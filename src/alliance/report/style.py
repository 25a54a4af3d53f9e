"""One figure style for every plot: seaborn, colour-blind-safe, readable in greyscale; one way
to save a figure (:func:`save_figure`: a 300-dpi PNG and a PDF beside it, byte-identical reruns).
"""

from __future__ import annotations

from pathlib import Path

# No backend is forced: scripts without a display get Agg from matplotlib itself, and Jupyter
# keeps its inline backend, so that a notebook shows the figures it draws.
import matplotlib.pyplot as plt
import seaborn as sns

PALETTE = "colorblind"
#: Okabe & Ito (2008) colours, the same as seaborn's "colorblind" palette's distinct hues, by name
OKABE_ITO = {
    "blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermilion": "#D55E00",
    "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "grey": "#999999", "black": "#000000",
}
#: resolution of every PNG the workflow writes (journals ask for 300 dpi for line art and halftones)
PNG_DPI = 300
# Markers and line styles carry the same information as colour, for greyscale printing.
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
LINESTYLES = ["-", "--", ":", "-."]
SEQUENTIAL = "cividis"
#: Above this many points a scatter layer is rasterised in the PDF (vector files stay small: a
#: national study's million residuals as vector markers took half a minute to write) and a
#: legend is not placed by matplotlib's "best" search, which tests every point.
RASTER_POINTS = 5_000


def dense(n_points: int) -> bool:
    """Whether a scatter of ``n_points`` is drawn as a dense cloud (:data:`RASTER_POINTS`)."""
    return n_points > RASTER_POINTS


def legend_place(n_points: int) -> str:
    """``loc`` of a legend over ``n_points``: matplotlib's "best" unless the cloud is dense."""
    return "upper left" if dense(n_points) else "best"


def apply_style() -> None:
    """Set the project's plotting defaults (fonts, palette, deterministic output)."""
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": PNG_DPI,
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


def pdf_path(png_path: str | Path) -> Path:
    """The PDF written beside a figure's PNG (same name, ``.pdf``)."""
    return Path(png_path).with_suffix(".pdf")


def save_figure(fig, png_path: str | Path) -> Path:
    """Write ``fig`` as a 300-dpi PNG at ``png_path`` and as a PDF beside it; return the PDF's path.

    Both files carry no date or software version in their metadata (PNG ``Software``, PDF
    ``CreationDate``/``Creator``/``Producer`` left out), so the same figure gives the same bytes on
    every run; each is written atomically (:func:`alliance.outputs.write_figure`).
    """
    from alliance.outputs import write_figure

    png = Path(png_path)
    if png.suffix != ".png":
        raise ValueError(f"save_figure: {png} must end in .png (the PDF is written beside it)")
    write_figure(fig, png, dpi=PNG_DPI)
    pdf = pdf_path(png)
    write_figure(fig, pdf)
    return pdf
