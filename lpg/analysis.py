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
* :func:`curvature_fit` / :func:`curvature_record` test affine growth: the share of
  ``c·x²`` in the rise of ``a + b·x + c·x²`` fitted to the medians, with its interval;
* :func:`offset_power_fit` fits ``T(ε) = T0 + C·ε^(−β)`` per group (a warm-up plus the
  claim's term) and :func:`coefficient_slope` the exponent of ``C`` against ``x``;
  :func:`mark_conditional` marks a result that holds under one reading only and
  :func:`claim_under_readings` states a claim under each reading and overall;
* :func:`log_mean_lik` averages likelihoods given as logs without leaving log space.

Times may be anything monotone — iterations, queries, or natural-log queries (pass
``log_y=False`` when the values are already logarithms, e.g. ``ln(32^128)`` queries).
"""

from __future__ import annotations

import math

import numpy as np

from lpg._checks import int_at_least

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


def _bootstrap_medians(g, keep, t, c, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, len(keep))``: the censoring-aware median of each group ``j`` in ``keep``
    over its runs resampled with replacement (runs of group ``j``: ``g == j``)."""
    rng = np.random.default_rng(seed)
    boot = np.full((n_boot, keep.size), np.nan)
    for col, j in enumerate(keep):
        idx = np.flatnonzero(g == j)
        draw = idx[rng.integers(0, idx.size, size=(n_boot, idx.size))]
        boot[:, col] = _km_median_batch(t[draw], c[draw])
    return boot


def _regime_fields(g, gx, keep, estimable, c) -> dict:
    """The fields a fit record keeps of its regime: the groups ``keep`` (``estimable``:
    those with a finite median), their x range, and how many runs it holds, censored or
    not, and how many groups had no estimate."""
    used = keep[estimable]
    in_regime = np.isin(g, keep)
    return {"regime": [float(gx[used].min()), float(gx[used].max())] if used.size else [math.nan, math.nan],
            "n_points": int(used.size), "n_censored": int(np.sum(c & in_regime)),
            "n_unestimable": int(keep.size - used.size), "n_runs": int(np.sum(in_regime))}


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
    return_boot: bool = False,
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
    bootstrap draws with a defined slope). ``return_boot`` adds ``"boot"``: the slope of
    every bootstrap draw (``(n_boot,)``, ``nan`` where undefined). The draws depend only on
    ``seed`` and the number of runs of each group, so two fits with the same ``seed`` on
    runs listed in the same order (e.g. by seed within each group) are paired draw by draw."""
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

    boot = _bootstrap_medians(g, keep, t, c, n_boot, seed)
    slopes = _ls_slope(X, transform_y(boot))
    valid = np.isfinite(slopes)
    if valid.any():
        ci = [float(np.percentile(slopes[valid], 2.5)), float(np.percentile(slopes[valid], 97.5))]
    else:
        ci = [math.nan, math.nan]
    fit = {"estimate": estimate, "ci": ci, **_regime_fields(g, gx, keep, np.isfinite(Y), c),
           "points": {"x": gx[keep].tolist(), "median": medians.tolist()}, "boot_valid": float(valid.mean())}
    return {**fit, "boot": slopes} if return_boot else fit


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


def _percentile(v: np.ndarray, q: float) -> float:
    """``np.percentile(v, q)`` (linear) where ``v`` may hold ``+inf``: ``inf`` when an
    infinite value enters the interpolation (NumPy's would give ``nan``)."""
    v = np.sort(np.asarray(v, dtype=np.float64).ravel())
    pos = q / 100.0 * (v.size - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    if not (math.isfinite(v[lo]) and math.isfinite(v[hi])):
        return math.inf
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def curvature_share(x, y, *, min_points: int = 4) -> np.ndarray | float:
    """Share of the rise of ``y = a + b·x + c·x²`` (least squares) over ``[x_lo, x_hi]``
    that the ``x²`` term makes: ``s = c·(x_lo + x_hi)/(b + c·(x_lo + x_hi))``, i.e.
    ``c·(x_hi² − x_lo²)`` over the fitted rise ``ŷ(x_hi) − ŷ(x_lo)``.

    0 for an affine ``y``, 1 for ``a + c·x²``, above 1 when the linear term is negative,
    below 0 for concave growth; it does not depend on ``a`` or on the scale of ``y``.
    ``y`` is ``(n,)`` (returns a float) or ``(B, n)`` (one fit per row, returns ``(B,)``);
    NaNs are left out (``x_lo``/``x_hi`` are those of the finite points); fewer than
    ``min_points`` finite values give ``nan``, a fitted rise that is not positive ``+inf``."""
    min_points = int_at_least("min_points", min_points, 3)  # a quadratic has 3 coefficients
    xv = np.asarray(x, dtype=np.float64)
    Y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if Y.shape[-1] != xv.size or xv.ndim != 1:
        raise ValueError(f"y must have one value per x ({xv.size}) in its last axis, got shape {np.shape(y)}")
    out = np.full(Y.shape[0], np.nan)
    ok = np.isfinite(Y)

    def shares(u, rows):
        # on x/x_hi, for conditioning; s is the same on either scale
        scale = u.max()
        design = np.stack([np.ones_like(u), u / scale, (u / scale) ** 2], axis=1)
        coef = np.linalg.lstsq(design, rows.T, rcond=None)[0]
        b, c = coef[1], coef[2]
        span = (u.min() + u.max()) / scale
        rise = b + c * span
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(rise > 0, c * span / rise, np.inf)

    full = ok.all(axis=1)
    if full.any() and xv.size >= min_points and np.unique(xv).size >= 3:
        out[full] = shares(xv, Y[full])
    for i in np.flatnonzero(~full):
        keep = ok[i]
        if keep.sum() >= min_points and np.unique(xv[keep]).size >= 3:
            out[i] = shares(xv[keep], Y[i, keep][None])[0]
    return out if np.ndim(y) > 1 else float(out[0])


def curvature_fit(x, times, censored, *, regime=None, min_points: int = 4, n_boot: int = 2000, seed: int = 0) -> dict:
    """:func:`curvature_share` of the Kaplan–Meier median time per ``x`` against ``x``:
    how far from affine the growth is (C9: ``Õ(N·min(1/Q^TL, k)/γ² + 1/(γ²ε))``).

    Only groups whose ``x`` lies in ``regime = [xmin, xmax]`` (inclusive; default: all)
    enter; groups whose median is not estimable are left out and counted in
    ``n_unestimable``; with fewer than ``min_points`` defined medians the estimate is
    ``nan`` (never a fit on fewer points). The 95% interval is the percentile bootstrap
    over seeds (runs resampled within each ``x``, as :func:`fit_slope`); a draw with
    fewer than ``min_points`` defined medians or a fitted rise that is not positive
    counts as ``s = +∞`` (``boot_valid``: the fraction of draws with a finite share).
    Returns the keys of :func:`fit_slope` (``estimate`` is ``s``)."""
    n_boot = int(n_boot)
    if n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    int_at_least("min_points", min_points, 3)
    xr, t, c, g = _as_runs(x, times, censored, None)
    gx = np.array([xr[g == j][0] for j in range(int(g.max()) + 1)]) if g.size else np.zeros(0)
    lo, hi = (-np.inf, np.inf) if regime is None else (float(regime[0]), float(regime[1]))
    if lo > hi:
        raise ValueError(f"regime must be [xmin, xmax] with xmin <= xmax, got {regime!r}")
    keep = np.flatnonzero((gx >= lo) & (gx <= hi))
    X = gx[keep]
    medians = np.array([censored_median(t[g == j], c[g == j]) for j in keep])
    estimate = float(curvature_share(X, medians[None], min_points=min_points)[0]) if keep.size else math.nan

    boot = _bootstrap_medians(g, keep, t, c, n_boot, seed)
    shares = curvature_share(X, boot, min_points=min_points) if keep.size else np.full(n_boot, np.nan)
    shares = np.where(np.isnan(shares), np.inf, shares)
    ci = [_percentile(shares, 2.5), _percentile(shares, 97.5)] if math.isfinite(estimate) else [math.nan, math.nan]
    return {"estimate": estimate, "ci": ci, **_regime_fields(g, gx, keep, np.isfinite(medians), c),
            "points": {"x": X.tolist(), "median": medians.tolist()}, "boot_valid": float(np.isfinite(shares).mean())}


def curvature_record(fit: dict, bound: float, *, note: str = "", claim: str = "") -> dict:
    """``summary.json``'s record of a :func:`curvature_fit`: affine growth (theory share
    0) is ``"confirmed"`` when the whole 95% interval of the share is at most ``bound``
    (``accept = [-inf, bound]``, ``accept_ci``), ``"not confirmed"`` otherwise,
    ``"not estimable"`` without an estimate."""
    rec = slope_record(fit, 0.0, accept=(-math.inf, bound), log_x=False, log_y=False, note=note, claim=claim)
    rec["axes"] = "share of the x² term in the rise of a + b·x + c·x² (medians vs x)"
    rec["accept_ci"] = True
    rec["verdict"] = verdict(rec)
    return rec


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
    """``"confirmed"`` when the estimate lies in the acceptance range (with
    ``accept_ci``: when the whole 95% interval does; an unbounded end of the range is
    ``±inf`` or, read back from JSON, ``None``), ``"not confirmed"`` when it does not,
    ``"not estimable"`` without an estimate, ``"reported"`` without a range,
    ``"illustration"`` for a measurement that cannot refute its claim. A record with
    ``conditional`` (text naming an assumption, e.g. ``"the per-token step"``) that
    would be confirmed is ``"conditional (on <text>)"`` (:func:`mark_conditional`). A
    record with ``min_points`` that rests on fewer (``n_points``) is ``"not confirmed"``
    (two points always fit a line)."""
    if rec.get("illustration"):
        return "illustration"
    est = rec.get("estimate")
    if est is None or not math.isfinite(est):
        return "not estimable"
    if "accept" not in rec:
        return "reported"
    if rec.get("n_points", math.inf) < rec.get("min_points", 0):
        return "not confirmed"
    lo, hi = rec["accept"]
    if rec.get("accept_ci"):
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
        inside = all(v is not None and math.isfinite(v) and lo <= v <= hi for v in rec["ci"])
    else:
        inside = lo <= est <= hi
    if inside and rec.get("conditional"):
        return f"conditional (on {rec['conditional']})"
    return "confirmed" if inside else "not confirmed"


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


# ---------------------------------------------------------------------------------
# Offset power laws T(ε) = T0 + C·ε^(−β), and verdicts under several readings
# ---------------------------------------------------------------------------------

_EXPONENT_RANGE = (0.2, 3.0)
_EXPONENT_STEP = 0.005


def _offset_ls(u: np.ndarray, m: np.ndarray, min_points: int):
    """Relative least squares of ``m ≈ T0 + C·u`` (residuals divided by ``m``) along the
    last axis, NaNs left out: ``(T0, C, sum of squared relative residuals)``, ``nan``
    where fewer than ``min_points`` values are finite and positive."""
    ok = np.isfinite(m) & (m > 0)
    v = np.where(ok, 1.0 / np.where(ok, m, 1.0) ** 2, 0.0)
    m0 = np.where(ok, m, 0.0)
    s0, s1, s2 = v.sum(-1), (v * u).sum(-1), (v * u * u).sum(-1)
    sy, suy = (v * m0).sum(-1), (v * u * m0).sum(-1)
    det = s0 * s2 - s1 * s1
    good = (ok.sum(-1) >= min_points) & (det > 1e-12 * np.maximum(s0 * s2, 1e-300))
    with np.errstate(divide="ignore", invalid="ignore"):
        C = (s0 * suy - s1 * sy) / det
        T0 = (sy - C * s1) / s0
        ssr = (v * (m0 - T0[..., None] - C[..., None] * u) ** 2).sum(-1)
    nan = np.full(good.shape, np.nan)
    return np.where(good, T0, nan), np.where(good, C, nan), np.where(good, ssr, nan)


def _offset_power(eps: np.ndarray, med: np.ndarray, exponent, min_points: int):
    """:func:`_offset_ls` on ``med (…, G, E)`` with ``u = ε^(−β)``: ``β`` given, or (``None``)
    the one exponent of every group minimising their summed residuals, on a grid of
    step ``_EXPONENT_STEP`` over ``_EXPONENT_RANGE`` (a coarse pass, then the fine grid
    around its best point). Returns ``(β (…), T0 (…, G), C (…, G))``."""
    lead = med.shape[:-2]
    if exponent is None:
        lo, hi = _EXPONENT_RANGE

        def total(b):  # b (…) -> summed residuals (…), inf where no group fits
            _, _, ssr = _offset_ls(eps ** -b[..., None, None], med, min_points)
            used = np.isfinite(ssr)
            return np.where(used.any(-1), np.where(used, ssr, 0.0).sum(-1), np.inf)

        def search(centre, offsets):
            best, arg = np.full(lead, np.inf), np.full(lead, np.nan)
            for off in offsets:
                b = np.clip(centre + off, lo, hi)
                t = total(b)
                better = t < best
                best, arg = np.where(better, t, best), np.where(better, b, arg)
            return arg

        coarse = 10 * _EXPONENT_STEP
        beta = search(np.full(lead, lo), np.arange(0.0, hi - lo + 1e-9, coarse))
        fine = np.arange(-coarse, coarse + 1e-9, _EXPONENT_STEP)
        beta = np.round(search(np.where(np.isfinite(beta), beta, lo), fine), 6)
        beta = np.where(np.isfinite(total(np.where(np.isfinite(beta), beta, lo))), beta, np.nan)
    else:
        beta = np.full(lead, float(exponent))
    T0, C, _ = _offset_ls(eps ** -np.where(np.isfinite(beta), beta, 1.0)[..., None, None], med, min_points)
    return beta, np.where(np.isfinite(beta)[..., None], T0, np.nan), np.where(np.isfinite(beta)[..., None], C, np.nan)


def offset_power_fit(eps, groups, *, exponent: float | None = 1.0, min_points: int = 3, n_boot: int = 2000,
                     seed: int = 0) -> dict:
    """Fit ``T_g(ε) = T0_g + C_g·ε^(−β)`` to the Kaplan–Meier median hitting times of
    each group ``g`` (e.g. each response length ``N``) at the errors ``eps`` (``(E,)``).

    ``groups`` is a list of ``(times, censored)``, each ``(runs, E)``: one run's hitting
    times of every ``ε`` in a row. Per group, the medians are fitted by relative least
    squares (residuals divided by the median, so every ``ε`` counts alike) on the
    ``ε`` whose median is estimable; fewer than ``min_points`` of them leave the group's
    ``T0``, ``C`` at ``nan``. ``exponent``: ``β`` fixed (1: the ``C/ε`` of an error
    ``∝ 1/T``), or ``None`` to fit one ``β`` shared by all groups (least squares over a
    grid 0.2…3 in steps of 0.005). The 95% intervals are percentile bootstraps over runs,
    resampled within each group with their whole rows (a run's hitting times are nested
    in ``ε``).

    Returns ``{"exponent", "exponent_ci", "T0", "C", "T0_ci", "C_ci" (one per group),
    "n_eps" (estimable medians per group), "medians" (G, E), "n_runs", "n_censored"
    (runs censored at some ε, per group), "boot": {"exponent" (B,), "T0", "C" (B, G)}}``."""
    n_boot = int_at_least("n_boot", n_boot, 1)
    min_points = int_at_least("min_points", min_points, 2 if exponent is not None else 3)
    e = np.asarray(eps, dtype=np.float64)
    if e.ndim != 1 or e.size < min_points or np.any(e <= 0):
        raise ValueError(f"eps must be at least {min_points} positive values, got {eps!r}")
    data = []
    for j, (t, c) in enumerate(groups):
        t, c = np.asarray(t, np.float64), np.asarray(c, bool)
        if t.ndim != 2 or t.shape[1] != e.size or c.shape != t.shape:
            raise ValueError(f"groups[{j}] must be (times, censored) of shape (runs, {e.size}), got shapes "
                             f"{np.shape(t)} and {np.shape(c)}")
        data.append((t, c))
    rng = np.random.default_rng(seed)

    def medians(t, c, idx):  # idx (B, runs) -> (B, E)
        B, n = idx.shape
        tt = np.moveaxis(t[idx], -1, 1).reshape(B * e.size, n)
        cc = np.moveaxis(c[idx], -1, 1).reshape(B * e.size, n)
        return _km_median_batch(tt, cc).reshape(B, e.size)

    med = np.stack([medians(t, c, np.arange(t.shape[0])[None])[0] for t, c in data])  # (G, E)
    boot = np.stack([medians(t, c, rng.integers(0, t.shape[0], size=(n_boot, t.shape[0]))) for t, c in data],
                    axis=1)  # (B, G, E)
    beta, T0, C = _offset_power(e, med, exponent, min_points)
    b_beta, b_T0, b_C = _offset_power(e, boot, exponent, min_points)

    def ci(v):
        v = v[np.isfinite(v)]
        return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v.size else [math.nan, math.nan]

    return {
        "exponent": float(beta),
        "exponent_ci": ci(b_beta) if exponent is None else [float(beta), float(beta)],
        "T0": T0.tolist(),
        "C": C.tolist(),
        "T0_ci": [ci(b_T0[:, g]) for g in range(len(data))],
        "C_ci": [ci(b_C[:, g]) for g in range(len(data))],
        "n_eps": np.isfinite(med).sum(-1).astype(int).tolist(),
        "medians": med.tolist(),
        "n_runs": [int(t.shape[0]) for t, _ in data],
        "n_censored": [int(c.any(axis=1).sum()) for _, c in data],
        "boot": {"exponent": b_beta, "T0": b_T0, "C": b_C},
    }


def coefficient_slope(x, estimate, boot, *, log_x: bool = True, n_runs: int = 0, n_censored: int = 0) -> dict:
    """Least-squares slope of ``ln estimate`` against ``ln x`` (or ``x``) over the groups
    with a finite positive estimate (e.g. the ``C(N)`` of :func:`offset_power_fit`), with
    the percentile-bootstrap 95% interval of the same slope over ``boot`` (``(B, G)``,
    one draw of every group's estimate per row, groups resampled independently). Returns
    the keys of :func:`fit_slope`, so :func:`slope_record` takes it (``points.median``
    holds the estimates)."""
    xv = np.asarray(x, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    bt = np.asarray(boot, dtype=np.float64)
    if est.shape != xv.shape or xv.ndim != 1 or bt.ndim != 2 or bt.shape[1] != xv.size:
        raise ValueError(f"estimate must be (G,) and boot (B, G) with G = {xv.size} (one per x), got shapes "
                         f"{est.shape} and {bt.shape}")
    if log_x and np.any(xv <= 0):
        raise ValueError("x must be > 0 for a log-log fit (log_x=True)")
    X = np.log(xv) if log_x else xv

    def logs(v):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(v > 0, np.log(np.where(v > 0, v, 1.0)), np.nan)

    estimate_slope = float(_ls_slope(X, logs(est)[None])[0])
    slopes = _ls_slope(X, logs(bt))
    valid = np.isfinite(slopes)
    ci = ([float(np.percentile(slopes[valid], 2.5)), float(np.percentile(slopes[valid], 97.5))]
          if valid.any() and math.isfinite(estimate_slope) else [math.nan, math.nan])
    used = np.isfinite(logs(est))
    return {
        "estimate": estimate_slope,
        "ci": ci,
        "regime": [float(xv[used].min()), float(xv[used].max())] if used.any() else [math.nan, math.nan],
        "n_points": int(used.sum()),
        "n_censored": int(n_censored),
        "n_unestimable": int((~used).sum()),
        "n_runs": int(n_runs),
        "points": {"x": xv.tolist(), "median": est.tolist()},
        "boot_valid": float(valid.mean()),
    }


def mark_conditional(by_reading: dict[str, dict]) -> dict[str, dict]:
    """Records of one quantity measured under several readings of an assumption (e.g.
    ``{"the response-level step": rec, "the per-token step": rec}``): when some but
    not all would be confirmed, each confirmed one becomes ``"conditional (on
    <its reading>)"`` (its ``conditional`` field); all or none confirmed are left as
    they are. Updates the records in place and returns them."""
    passed = [name for name, rec in by_reading.items() if verdict(rec) == "confirmed"]
    if 0 < len(passed) < len(by_reading):
        for name in passed:
            by_reading[name]["conditional"] = name
            by_reading[name]["verdict"] = verdict(by_reading[name])
    return by_reading


def under_reading(table, unit: str) -> np.ndarray:
    """The rows of ``table`` computed under the reading ``unit`` of the adaptive step (its
    ``step_unit`` column; a table without one holds the response-level reading only)."""
    units = table["step_unit"] if "step_unit" in table else np.full(len(table), "response")
    return units == unit


def claim_under_readings(claim: str, by_reading: dict[str, list[dict]]) -> dict:
    """The checks of ``claim`` measured under several readings of an assumption
    (``{reading: its records}``, the paper's reading first): ``"<claim> under <reading>"``
    is ``True`` when every record of that reading is confirmed (or conditional on it), and
    ``claim`` is ``"confirmed"`` when every reading passes, ``"conditional (on …)"`` when
    some do, ``"not confirmed"`` when none does."""
    passed = [r for r, recs in by_reading.items()
              if recs and all(verdict(rec) in ("confirmed", f"conditional (on {r})") for rec in recs)]
    overall = ("confirmed" if len(passed) == len(by_reading) else
               f"conditional (on {' and '.join(passed)})" if passed else "not confirmed")
    return {**{f"{claim} under {r}": r in passed for r in by_reading}, claim: overall}


def checks_line(checks: dict) -> str:
    """A summary's ``verdict`` checks as one line: ``key: yes/NO/<verdict>; …``."""
    return "; ".join(f"{key}: {'yes' if ok is True else ('NO' if ok is False else ok)}" for key, ok in checks.items())
