"""Figure helpers shared by the experiments: matplotlib on the Agg backend (no display
needed), seeds drawn as a band (median line, central 95% of seeds shaded), quantities
that span many orders of magnitude plotted as log10 values on an axis labelled in
powers of ten (so ``32^-128`` plots as well as ``0.5``), PNG and PDF written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from lpg.results import atomic_write_bytes, is_writer  # noqa: E402

COLORS = {"orm": "#c0392b", "prm": "#1f5fa8", "base": "#555555"}
BAND = (2.5, 97.5)
"""Percentiles over seeds of the shaded band."""


def figure(ncols: int, nrows: int = 1, *, width: float = 4.2, height: float = 3.3):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.ravel()


def seed_band(ax, x, values, *, label: str, color=None, alpha: float = 0.2):
    """Median over seeds (rows of ``values``) as a line, the central 95% of seeds as a
    band; ``nan`` entries are ignored. Returns the line."""
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = v[None]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(v, axis=0)
            lo, hi = np.nanpercentile(v, BAND, axis=0)
    (line,) = ax.plot(x, med, color=color, label=label, lw=1.8)
    if v.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=alpha, lw=0)
    return line


def log10_axis(ax, which: str = "y") -> None:
    """Label an axis whose data are log10 values as powers of ten."""
    fmt = FuncFormatter(lambda v, _: f"$10^{{{v:g}}}$")
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    axis.set_major_formatter(fmt)


def band_note(n_seeds: int) -> str:
    return f"line: median over {n_seeds} seeds; band: central 95%" if n_seeds > 1 else "1 seed"


def save(fig, out_dir, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` under ``out_dir`` (atomically; process 0 of a
    multi-process job only); close ``fig``. Returns the paths."""
    paths = [Path(out_dir) / f"{name}.{ext}" for ext in ("png", "pdf")]
    if is_writer():
        for path in paths:
            buf = io.BytesIO()
            fig.savefig(buf, format=path.suffix[1:], dpi=150, bbox_inches="tight")
            atomic_write_bytes(path, buf.getvalue())
    plt.close(fig)
    return paths


def coloured_lines(ax, x, curves, values, *, cmap: str = "viridis", label: str = ""):
    """One line per row of ``curves`` coloured by ``values`` (one per row), with a
    colour bar labelled ``label``."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    norm = matplotlib.colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    cm = plt.get_cmap(cmap)
    for row, v in zip(np.asarray(curves), values):
        ax.plot(x, row, color=cm(norm(v)), lw=0.9, alpha=0.85)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cm)
    bar = ax.figure.colorbar(sm, ax=ax)
    bar.set_label(label)
    return bar
