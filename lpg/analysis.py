"""Censoring-aware scaling fits (NumPy, on the host) for the query-complexity claims.

The measured quantity of PAPER.md §4 is a hitting time (:mod:`lpg.hitting`): queries or
iterations until a run reaches its target. A run that spends its whole budget first is
*right-censored*: all we know is that its hitting time is at least the budget. Dropping
such runs, or treating the budget as the hitting time, biases a scaling exponent towards
zero exactly where the claim is hardest; here they are kept:

* :func:`censored_median` is the Kaplan–Meier median, which uses a censored run as
  "at least its budget"; when more than half of the runs are censored (so the median is
  not bounded by the data) it is ``nan`` and the point is reported as not estimable.
* :func:`fit_slope` fits the scaling exponent to the per-``x`` medians on log-log (or
  log-linear) axes, with a bootstrap over seeds (runs resampled within each ``x``) for a
  95% interval.
* :func:`theory_curve` draws a theory exponent with its constant fitted to the data, the
  overlay of every scaling figure;
* :func:`slope_record` / :func:`fit_record` are the records ``summary.json`` keeps of a
  fitted exponent (estimate, interval, theory, acceptance range and :func:`verdict`);
* :func:`log_mean_lik` averages likelihoods given as logs without leaving log space.

Times may be anything monotone — iterations, queries, or natural-log queries (pass
``log_y=False`` when the values are already logarithms, e.g. ``ln(32^128)`` queries).
"""

from __future__ import annotations

import math

import numpy as np

_HALF_TOL = 1e-9


def hitting_time(curve, times, threshold, *, above: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """First time each run's ``curve`` crosses ``threshold``.

    ``curve`` is ``(runs, points)`` (a single run may be ``(points,)``); ``times`` is
    ``(points,)`` or ``(runs, points)`` (e.g. cumulative log-queries of each run).
    Crossing means ``curve >= threshold`` (``above``) or ``curve <= threshold``.
    Returns ``(time, censored)``, each ``(runs,)``: a run that never crosses is censored
    and gets its last time (its budget). NaNs in ``curve`` never count as a crossing."""
    c = np.atleast_2d(np.asarray(curve, dtype=np.float64))
    t = np.asarray(times, dtype=np.float64)
    if t.ndim == 1 and t.shape[0] == c.shape[1]:
        t = np.broadcast_to(t, c.shape)
    if t.shape != c.shape:
        raise ValueError(f"times must have shape {c.shape[1:]} or {c.shape}, got shape {np.shape(times)}")
    if c.shape[1] == 0:
        raise ValueError("curve must have at least one point")
    with np.errstate(invalid="ignore"):
        crossed = c >= threshold if above else c <= threshold
    any_cross = crossed.any(axis=1)
    first = np.argmax(crossed, axis=1)
    idx = np.where(any_cross, first, c.shape[1] - 1)
    time = t[np.arange(c.shape[0]), idx]
    return time, ~any_cross


def _km_median_batch(times: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """Kaplan–Meier medians of each row of ``times`` / ``censored`` (``(B, n)``).

    Sorted by time with events before censorings at ties, the survival after the
    ``i``-th (0-based) observation is ``Π (1 − 1/(n − j))`` over the events ``j ≤ i``
    (one factor per event; tied events telescope to the grouped estimator). The median
    is the first time with ``S ≤ ½``; where ``S`` is exactly ``½`` on an interval it is
    the midpoint to the next event time (so with no censoring it equals ``np.median``).
    ``nan`` where ``S`` never reaches ``½``."""
    B, n = times.shape
    order = np.lexsort((censored, times), axis=-1)  # by time, events (False) first
    t = np.take_along_axis(times, order, axis=-1)
    ev = ~np.take_along_axis(censored, order, axis=-1)
    at_risk = n - np.arange(n)
    surv = np.cumprod(np.where(ev, 1.0 - 1.0 / at_risk, 1.0), axis=-1)
    below = surv <= 0.5 + _HALF_TOL
    found = below.any(axis=-1)
    i = np.argmax(below, axis=-1)
    rows = np.arange(B)
    med = t[rows, i].astype(np.float64)
    exact_half = np.abs(surv[rows, i] - 0.5) <= _HALF_TOL
    # Next event strictly after position i (a later event with the same time cannot
    # exist: ties are consecutive and S keeps falling through them).
    later = ev & (np.arange(n)[None, :] > i[:, None])
    has_next = later.any(axis=-1)
    nxt = t[rows, np.argmax(later, axis=-1)]
    med = np.where(exact_half & has_next, 0.5 * (med + nxt), med)
    return np.where(found, med, np.nan)


def censored_median(times, censored) -> float:
    """Median hitting time with censored runs counted as ``≥`` their budget
    (Kaplan–Meier). ``nan`` when more than half of the runs are censored before the
    median is reached (the point is then not estimable and is reported as such)."""
    t = np.asarray(times, dtype=np.float64).ravel()
    c = np.asarray(censored, dtype=bool).ravel()
    if t.shape != c.shape:
        raise ValueError(f"censored must have the shape of times {t.shape}, got {c.shape}")
    if t.size == 0:
        raise ValueError("times must hold at least one run")
    return float(_km_median_batch(t[None], c[None])[0])


def _as_runs(x, times, censored, groups):
    """Normalise the inputs of :func:`fit_slope` to flat per-run arrays."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    c = np.asarray(censored, dtype=bool)
    if t.shape != c.shape:
        raise ValueError(f"censored must have the shape of times {t.shape}, got {c.shape}")
    if t.ndim == 2 and x.ndim == 1 and x.shape[0] == t.shape[0] and groups is None:
        # one row of runs per x value
        g = np.repeat(np.arange(t.shape[0]), t.shape[1])
        return np.repeat(x, t.shape[1]), t.ravel(), c.ravel(), g
    t, c = t.ravel(), c.ravel()
    x = np.broadcast_to(x, t.shape).ravel() if x.size == 1 else x.ravel()
    if x.shape != t.shape:
        raise ValueError(f"x must have one value per run ({t.size}), got shape {np.shape(x)}")
    if groups is None:
        groups = x
    g = np.asarray(groups).ravel()
    if g.shape != t.shape:
        raise ValueError(f"groups must have one label per run ({t.size}), got shape {np.shape(groups)}")
    _, g = np.unique(g, return_inverse=True)
    return x, t, c, g


def _ls_slope(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of each row of ``Y`` on ``X``, ignoring NaNs in ``Y``; ``nan``
    for rows with fewer than two distinct finite points."""
    ok = np.isfinite(Y)
    w = ok.astype(np.float64)
    nw = w.sum(axis=-1)
    Xb = np.broadcast_to(X, Y.shape)
    Y0 = np.where(ok, Y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * Xb).sum(-1) / nw
        my = (w * Y0).sum(-1) / nw
        dx = Xb - mx[..., None]
        sxx = (w * dx * dx).sum(-1)
        sxy = (w * dx * (Y0 - my[..., None])).sum(-1)
        slope = sxy / sxx
    return np.where((nw >= 2) & (sxx > 1e-300), slope, np.nan)


def fit_slope(
    x,
    times,
    censored,
    *,
    groups=None,
    log_x: bool = True,
    log_y: bool = True,
    regime=None,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Scaling exponent of the censored-median hitting time against ``x``.

    Inputs: per-run arrays ``x``, ``times``, ``censored`` with ``groups`` (one label per
    run; default: the value of ``x``), or ``times``/``censored`` of shape
    ``(n_x, runs)`` with ``x`` of shape ``(n_x,)``. Each group's :func:`censored_median`
    is taken; the slope is the least-squares slope of ``Y`` on ``X`` with
    ``X = log x`` (``log_x``) or ``x``, ``Y = log median`` (``log_y``) or the median.
    Only groups whose ``x`` lies in ``regime = [xmin, xmax]`` (inclusive; default: all)
    enter; groups whose median is not estimable (more than half censored) are left out
    and counted in ``n_unestimable``. The 95% interval is the percentile bootstrap over
    seeds: runs are resampled with replacement within each group, ``n_boot`` times.

    Returns ``{"estimate", "ci": [lo, hi], "regime": [xmin, xmax], "n_points",
    "n_censored", "n_unestimable", "n_runs", "points": {"x", "median"}, "boot_valid"}``
    (``n_censored`` counts censored runs in the regime, ``boot_valid`` the fraction of
    bootstrap draws with a defined slope)."""
    n_boot = int(n_boot)
    if n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    xr, t, c, g = _as_runs(x, times, censored, groups)
    n_groups = int(g.max()) + 1 if g.size else 0
    gx = np.full(n_groups, np.nan)
    for j in range(n_groups):
        vals = np.unique(xr[g == j])
        if vals.size != 1:
            raise ValueError(f"every group must have a single x value, group {j} has {vals.tolist()}")
        gx[j] = vals[0]
    lo, hi = (-np.inf, np.inf) if regime is None else (float(regime[0]), float(regime[1]))
    if lo > hi:
        raise ValueError(f"regime must be [xmin, xmax] with xmin <= xmax, got {regime!r}")
    keep = np.flatnonzero((gx >= lo) & (gx <= hi))
    if log_x and np.any(gx[keep] <= 0):
        raise ValueError("x must be > 0 for a log-log fit (log_x=True)")

    def transform_y(med):
        if not log_y:
            return med
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(med > 0, np.log(np.where(med > 0, med, 1.0)), np.nan)

    X = np.log(gx[keep]) if log_x else gx[keep]
    medians = np.array([censored_median(t[g == j], c[g == j]) for j in keep])
    Y = transform_y(medians)
    estimate = float(_ls_slope(X, Y[None])[0]) if keep.size else math.nan

    rng = np.random.default_rng(seed)
    boot = np.full((n_boot, keep.size), np.nan)
    for col, j in enumerate(keep):
        idx = np.flatnonzero(g == j)
        draw = idx[rng.integers(0, idx.size, size=(n_boot, idx.size))]
        boot[:, col] = _km_median_batch(t[draw], c[draw])
    slopes = _ls_slope(X, transform_y(boot))
    valid = np.isfinite(slopes)
    if valid.any():
        ci = [float(np.percentile(slopes[valid], 2.5)), float(np.percentile(slopes[valid], 97.5))]
    else:
        ci = [math.nan, math.nan]
    used = keep[np.isfinite(Y)]
    in_regime = np.isin(g, keep)
    return {
        "estimate": estimate,
        "ci": ci,
        "regime": [float(gx[used].min()), float(gx[used].max())] if used.size else [math.nan, math.nan],
        "n_points": int(used.size),
        "n_censored": int(np.sum(c & in_regime)),
        "n_unestimable": int(keep.size - used.size),
        "n_runs": int(np.sum(in_regime)),
        "points": {"x": gx[keep].tolist(), "median": medians.tolist()},
        "boot_valid": float(valid.mean()),
    }


def theory_curve(x, times_median, exponent, *, log_x: bool = True, log_y: bool = True) -> np.ndarray:
    """The theory law with exponent ``exponent`` and its constant fitted to the data.

    With ``log_x`` and ``log_y`` (default) the law is ``C·x^exponent`` (a power law);
    ``log_x=False`` gives ``C·e^{exponent·x}``; ``log_y=False`` means the medians are
    already on the fitted scale (e.g. natural-log queries), so the law is
    ``c + exponent·X``. The constant is the least-squares one (the mean of
    ``Y − exponent·X`` over the points with a finite median); the curve is returned at
    every ``x`` on the scale of ``times_median``. All-NaN medians give an all-NaN curve."""
    xv = np.asarray(x, dtype=np.float64)
    m = np.asarray(times_median, dtype=np.float64)
    if xv.shape != m.shape:
        raise ValueError(f"times_median must have the shape of x {xv.shape}, got {m.shape}")
    if log_x and np.any(xv <= 0):
        raise ValueError("x must be > 0 when log_x=True")
    X = np.log(xv) if log_x else xv
    with np.errstate(divide="ignore", invalid="ignore"):
        Y = np.log(m) if log_y else m
    ok = np.isfinite(Y)
    if not ok.any():
        return np.full_like(xv, np.nan)
    const = float(np.mean(Y[ok] - exponent * X[ok]))
    fitted = const + exponent * X
    return np.exp(fitted) if log_y else fitted


def affine_fit(x, times, censored, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Fit ``median time = a + b·x`` to the Kaplan–Meier medians per ``x`` (least
    squares, linear axes), with percentile-bootstrap 95% intervals over seeds (runs
    resampled within each ``x``, as :func:`fit_slope`). Used where a bound is a sum of
    an ``x``-free term and a linear one (C9: ``Õ(N·min(1/Q^TL, k)/γ² + 1/(γ²ε))``), whose
    log-log slope depends on the range of ``x``. Returns ``{"intercept", "per_x",
    "intercept_ci", "per_x_ci"}``; ``nan`` where fewer than two medians are defined."""
    x, t, c, g = _as_runs(x, times, censored, None)
    xs = np.array([x[g == j][0] for j in range(g.max() + 1)])
    rng = np.random.default_rng(seed)

    def fit(meds):
        ok = np.isfinite(meds)
        if ok.sum() < 2:
            return np.nan, np.nan
        b, a = np.polyfit(xs[ok], meds[ok], 1)
        return a, b

    groups = [(t[g == j], c[g == j]) for j in range(xs.size)]
    a, b = fit(np.array([censored_median(tj, cj) for tj, cj in groups]))
    boot_meds = np.empty((int(n_boot), xs.size))
    for j, (tj, cj) in enumerate(groups):
        idx = rng.integers(0, tj.size, (int(n_boot), tj.size))
        boot_meds[:, j] = _km_median_batch(tj[idx], cj[idx])
    boot = np.array([fit(meds) for meds in boot_meds])
    ci = lambda v: [float(q) for q in np.nanpercentile(v, [2.5, 97.5])]  # noqa: E731
    return {"intercept": float(a), "per_x": float(b), "intercept_ci": ci(boot[:, 0]), "per_x_ci": ci(boot[:, 1])}


# ---------------------------------------------------------------------------------
# Slope records and verdicts
# ---------------------------------------------------------------------------------


def slope_record(fit: dict, theory: float, *, accept=None, log_x: bool = True, log_y: bool = True, note: str = "",
                 claim: str = "", illustration: bool = False) -> dict:
    """``summary.json``'s ``slopes.<name>``: the fit (estimate, 95% CI, regime, counts of
    points, censored runs and not-estimable points), the theory exponent, the acceptance
    range and the verdict. ``illustration``: the measurement cannot refute the claim (an
    existential claim shown on one constructed instance); its verdict is
    ``"illustration"`` whatever the estimate, with ``in_range`` saying where it fell."""
    rec = {
        "estimate": fit["estimate"],
        "ci": fit["ci"],
        "theory": theory,
        "regime": fit["regime"],
        "axes": f"{'log ' if log_y else ''}y vs {'log ' if log_x else ''}x",
        "n_points": fit["n_points"],
        "n_runs": fit["n_runs"],
        "n_censored": fit["n_censored"],
        "n_unestimable": fit["n_unestimable"],
        "points": fit["points"],
    }
    if accept is not None:
        rec["accept"] = [float(accept[0]), float(accept[1])]
    if illustration:
        rec["illustration"] = True
        rec["in_range"] = verdict({k: v for k, v in rec.items() if k != "illustration"}) == "confirmed"
    rec["verdict"] = verdict(rec)
    if claim:
        rec["claim"] = claim
    if note:
        rec["note"] = note
    return rec


def verdict(rec: dict) -> str:
    """``"confirmed"`` when the estimate lies in the acceptance range, ``"not confirmed"``
    when it does not, ``"not estimable"`` without an estimate, ``"reported"`` without a
    range, ``"illustration"`` for a measurement that cannot refute its claim."""
    if rec.get("illustration"):
        return "illustration"
    est = rec.get("estimate")
    if est is None or not math.isfinite(est):
        return "not estimable"
    if "accept" not in rec:
        return "reported"
    lo, hi = rec["accept"]
    return "confirmed" if lo <= est <= hi else "not confirmed"


def fit_record(x, times, censored, *, theory: float, accept=None, log_x=True, log_y=True, regime=None,
               n_boot: int = 2000, seed: int = 0, note: str = "", claim: str = "", illustration: bool = False) -> dict:
    """:func:`lpg.analysis.fit_slope` on per-run arrays, as a :func:`slope_record`."""
    fit = fit_slope(x, times, censored, log_x=log_x, log_y=log_y, regime=regime, n_boot=n_boot, seed=seed)
    return slope_record(fit, theory, accept=accept, log_x=log_x, log_y=log_y, note=note, claim=claim,
                        illustration=illustration)


def fmt_slope(rec: dict) -> str:
    est = rec.get("estimate")
    if est is None or not math.isfinite(est):
        return "n/a"
    lo, hi = rec["ci"]
    lo = "?" if lo is None else f"{lo:.3g}"
    hi = "?" if hi is None else f"{hi:.3g}"
    return f"{est:.3g} [{lo}, {hi}]"


def slopes_table(slopes: dict) -> str:
    """A text table of ``slopes``: name | theory | measured (95% CI) | regime | censored | verdict."""
    rows = [("slope", "theory", "measured [95% CI]", "regime", "cens/runs", "verdict")]
    for name, rec in slopes.items():
        theory = rec.get("theory")
        reg = rec.get("regime") or [None, None]
        reg_s = "n/a" if reg[0] is None else f"[{reg[0]:.3g}, {reg[1]:.3g}]"
        rows.append((name, "n/a" if theory is None else f"{theory:.3g}", fmt_slope(rec), reg_s,
                     f"{rec.get('n_censored', 0)}/{rec.get('n_runs', 0)}", rec.get("verdict", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def log_mean_lik(log_lik, mask) -> np.ndarray:
    """``log mean_{j ∈ mask} exp(ℓ_j)`` over the last axis (``nan`` for an empty mask).
    ``log_lik (S, …, M)``, ``mask (S, M)``."""
    ll = np.asarray(log_lik, np.float64)
    mask = np.asarray(mask, bool)
    m = np.broadcast_to(mask.reshape(mask.shape[0], *([1] * (ll.ndim - 2)), mask.shape[1]), ll.shape)
    masked = np.where(m, ll, -np.inf)
    n = m.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        peak = np.max(masked, axis=-1, keepdims=True)
        safe = np.where(np.isfinite(peak), peak, 0.0)
        out = safe[..., 0] + np.log(np.sum(np.exp(masked - safe), axis=-1)) - np.log(n)
    return np.where(n > 0, out, np.nan)
