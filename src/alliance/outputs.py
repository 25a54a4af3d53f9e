"""Writing results so that a failed step never leaves a file that looks complete.

Each writer writes to a temporary file beside the target and renames it into place, and
formats numbers identically on every run (full precision, fixed line endings), so that the
same inputs give byte-identical results.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path; on success it replaces ``path``, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.part"):
        stale.unlink(missing_ok=True)  # left by a run that was killed mid-write
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n", float_format="%.17g")


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, compression="zstd")


def read_parquet(path: str | Path, columns: list[str] | None = None, rows=None) -> pd.DataFrame:
    """A Parquet file of the workflow (``results/``) as ``pandas.read_parquet`` reads it, with
    about half its peak memory: Arrow's buffers are released column by column as pandas takes
    them over (``self_destruct``), and columns are not consolidated into one block (a copy of
    every float column of a wide table). ``columns``: read only these; ``rows``: only the rows
    these ``pyarrow`` filters keep (e.g. ``[("respondent", "==", "observer")]``), in file
    order, with a new RangeIndex."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=columns, filters=rows, use_pandas_metadata=True)
    attrs = (table.schema.metadata or {}).get(b"PANDAS_ATTRS")
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    if attrs:
        frame.attrs = json.loads(attrs)
    return frame


def write_json(data, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_plain) + "\n", encoding="utf-8")


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_figure(fig, path: str | Path, **kwargs) -> None:
    """Save a matplotlib figure without timestamps in its metadata (byte-identical reruns).

    A PNG is stored with a 256-colour palette (median cut, no dithering, on white): plots have
    few colours, so it looks the same at a third of the size, and the report, which embeds every
    figure, stays small. The PDF beside it (:func:`alliance.report.style.save_figure`) is the
    vector original.
    """
    path = Path(path)
    meta = {"Software": None} if path.suffix == ".png" else {"CreationDate": None, "Creator": None, "Producer": None}
    if path.suffix == ".svg":
        meta = {"Date": None, "Creator": None}
    with atomic_path(path) as tmp:
        if path.suffix == ".png":
            _write_palette_png(fig, tmp, meta, **kwargs)
        else:
            fig.savefig(tmp, format=path.suffix.lstrip("."), metadata=meta, **kwargs)


def _write_palette_png(fig, target: Path, meta: Mapping[str, Any], **kwargs) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata=meta, **kwargs)
    buffer.seek(0)
    with Image.open(buffer) as image:
        dpi = image.info.get("dpi")
        rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.split()[3])
    palette = flat.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    options = {"optimize": True}
    if dpi:
        options["dpi"] = tuple(round(d) for d in dpi)
    palette.save(target, format="PNG", **options)



def json_safe(value: Any) -> Any:
    """Nested dicts/lists of plain Python values, NaN and infinities as ``None`` (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, pd.Series):
        return json_safe(value.to_dict())
    if isinstance(value, pd.DataFrame):
        return [json_safe(r) for r in value.to_dict(orient="records")]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value
