"""Figure helpers shared by the experiments: matplotlib on the Agg backend (no display
needed), seeds drawn as a band (median line, central 95% of seeds shaded), quantities
that span many orders of magnitude plotted as log10 values on an axis labelled in
powers of ten (so ``32^-128`` plots as well as ``0.5``), PNG and PDF written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from lpg.analysis import censored_median, theory_curve  # noqa: E402
from lpg.results import atomic_write_bytes, is_writer  # noqa: E402

LN10 = math.log(10.0)

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


def save(fig, out_dir, name: str, title: str | None = None, fontsize: float = 9) -> list[Path]:
    """Give ``fig`` its ``title`` and a tight layout, write ``name.png`` and ``name.pdf``
    under ``out_dir`` (atomically; process 0 of a multi-process job only), close ``fig``.
    Returns the paths."""
    if title is not None:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
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


# ---------------------------------------------------------------------------------
# Scaling figures: runs, censored runs, Kaplan–Meier medians, theory overlays
# ---------------------------------------------------------------------------------


def scaling_series(ax, x, log10_y, censored, *, label: str, color, marker: str = "o", ls: str = "-",
                   jitter: float = 0.0, log_x: bool = True, seed: int = 0):
    """One series of a scaling figure: every run as a small dot (censored runs as hollow
    markers at their budget, i.e. lower bounds), the Kaplan–Meier median per ``x`` as a
    line with markers (points not estimable are left out). Returns ``(xs, medians)``
    (log10). ``jitter`` spreads runs horizontally (a fraction of a decade, or of the
    unit for a linear axis) so they do not overlap."""
    x = np.asarray(x, np.float64)
    y = np.asarray(log10_y, np.float64)
    c = np.asarray(censored, bool)
    rng = np.random.default_rng(seed)
    if jitter:
        offs = rng.uniform(-jitter, jitter, size=x.shape)
        xj = x * 10.0**offs if log_x else x + offs
    else:
        xj = x
    ax.scatter(xj[~c], y[~c], s=7, color=color, alpha=0.28, lw=0, zorder=2)
    if c.any():
        ax.scatter(xj[c], y[c], s=22, marker=marker, facecolors="white", edgecolors=color, lw=0.9, alpha=0.9,
                   zorder=3)
    xs = np.unique(x)
    med = np.array([censored_median(y[x == v], c[x == v]) for v in xs])
    ok = np.isfinite(med)
    ax.plot(xs[ok], med[ok], ls=ls, marker=marker, color=color, ms=4.5, lw=1.8, label=label, zorder=4,
            markeredgecolor="white", markeredgewidth=0.6)
    return xs, med


def theory_overlay(ax, xs, med_log10, exponent: float, *, color, log_x: bool = True, label=None, ls="--"):
    """The theory curve with exponent ``exponent`` and its constant fitted to the medians
    (:func:`lpg.analysis.theory_curve`; ``med_log10``: log10 medians, ``nan`` where not
    estimable). ``exponent`` is a power of ``x`` (``log_x``) or a rate per unit ``x`` in
    natural-log units (``log_x=False``: ``Q ∝ e^{exponent·x}``). Drawn over the range of
    ``xs``."""
    xs = np.asarray(xs, np.float64)
    ln_med = np.asarray(med_log10, np.float64) * LN10
    if not np.isfinite(ln_med).any():
        return None
    at_points = theory_curve(xs, ln_med, exponent, log_x=log_x, log_y=False)
    X = np.log(xs) if log_x else xs
    const = at_points[0] - exponent * X[0]
    fine = np.geomspace(xs.min(), xs.max(), 100) if log_x else np.linspace(xs.min(), xs.max(), 100)
    Xf = np.log(fine) if log_x else fine
    (line,) = ax.plot(fine, (const + exponent * Xf) / LN10, ls=ls, color=color, lw=1.1, alpha=0.85, label=label,
                      zorder=1)
    return line


def lower_bound_overlay(ax, xs, log10_bound, *, color="#444444", label=None):
    """An absolute lower bound (no fitted constant), dotted."""
    (line,) = ax.plot(xs, log10_bound, ls=":", color=color, lw=1.3, label=label, zorder=1)
    return line


def censored_legend_handle(color="#555555", marker="o"):
    from matplotlib.lines import Line2D

    return Line2D([], [], ls="none", marker=marker, markerfacecolor="white", markeredgecolor=color,
                  label="censored run (≥ budget)")
