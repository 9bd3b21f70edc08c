"""What the query-complexity scaling experiments share (claims C2, C3, C5, C9; PAPER.md
§4): the exact planted problem, the paper's choice of ``m``, a hitting-time sweep, the
slope records of ``summary.json`` and the scaling figure (every run shown, censored runs
hollow at their budget, the Kaplan–Meier median per point, the theory exponent with its
constant fitted to the data, and the lower bound where the paper has one).

Measurement protocol (issue "query-complexity scaling"):

* a run's measured quantity is a hitting time from :func:`lpg.hitting.run_until`: reward
  queries (natural log) and iterations until the tracked likelihood is ``≥ 1 − ε`` on
  every tracked context;
* a run that spends its budget first is censored, kept and shown; per-point medians are
  Kaplan–Meier medians (:func:`lpg.analysis.censored_median`), and a point with more
  than half of its runs censored is reported as not estimable, never imputed;
* exponents come from :func:`lpg.analysis.fit_slope` over the regime the claim is about
  (stated in each experiment's docstring before looking at the data), with a 95%
  bootstrap interval over seeds; ``summary.json`` holds
  ``slopes.<name> = {estimate, ci, theory, regime, ...}``.
"""

from __future__ import annotations

import math
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import plotting
from lpg.analysis import fit_slope, theory_curve
from lpg.features import max_planted_contexts
from lpg.hitting import likelihood_at_least, run_until
from lpg.metrics import likelihood_quantile, sequence_log_likelihoods, token_likelihood_quantile, token_log_likelihoods

LN10 = math.log(10.0)
STYLE = {
    ("orm", "uniform"): dict(color=plotting.COLORS["orm"], marker="o"),
    ("orm", "pretrained"): dict(color="#e08a3c", marker="s"),
    ("prm", "uniform"): dict(color=plotting.COLORS["prm"], marker="o"),
    ("prm", "pretrained"): dict(color="#3aa1a1", marker="s"),
}
"""Colour and marker of each (algorithm, base model) series of ``scaling-n``."""


# ---------------------------------------------------------------------------------
# The problem and the paper's m
# ---------------------------------------------------------------------------------


def planted_problem(task: lpg.PlantedTask, *, key, base=None, length=None) -> lpg.Problem:
    """A :class:`~lpg.Problem` whose test and tracked sets are all ``S`` contexts of a
    planted task (contexts are uniform over them, so the error and the per-sample
    likelihoods are exact, not Monte-Carlo estimates)."""
    problem = lpg.make_problem(task, key=key, n_test=1, track_x=task.contexts, base=base, length=length)
    return eqx.tree_at(lambda p: (p.test_x, p.test_y), problem, (problem.track_x, problem.track_y))


def log_ceil(log_x):
    """``log ⌈x⌉`` from ``log x`` (``x ≥ 1``), exact to float32 where ``x < 2^22`` (a
    hair of relative slack absorbs ``exp(log 4) = 4.0000005``), ``log x`` beyond."""
    log_x = jnp.asarray(log_x, jnp.float32)
    small = log_x < 22 * math.log(2.0)
    x = jnp.exp(jnp.minimum(log_x, 22 * math.log(2.0)))
    return jnp.where(small, jnp.log(jnp.ceil(x * (1.0 - 2e-6))), log_x)


def base_quantiles(problem: lpg.Problem, eps: float):
    """``(log Q_{q0}(ε), log Q^TL_{q0}(ε))`` of the problem's base model over its
    tracked contexts (for a planted problem, the exact context distribution)."""
    w0 = problem.base_weights()
    ll = sequence_log_likelihoods(problem.fmap, w0, problem.track_x, problem.track_y, problem.length)
    tl = token_log_likelihoods(problem.fmap, w0, problem.track_x, problem.track_y, problem.length)
    return likelihood_quantile(ll, eps), token_likelihood_quantile(tl, eps, problem.length)


def orm_log_m(log_q, length, k: int):
    """Algorithm 1's ``log m`` with ``m = min(⌈1/Q_{q0}(ε)⌉, k^N)`` (PAPER.md §3)."""
    return jnp.minimum(log_ceil(-log_q), length * math.log(k))


def prm_log_m(log_q_tl, k: int, length=None, delta: float | None = None):
    """Algorithm 2's ``log m``: ``m = min(⌈1/Q^TL_{q0}(ε)⌉, k)`` draws per position
    (PAPER.md §4, C9), times ``⌈ln(N/δ)⌉`` when ``delta`` is given.

    The log factor is the one C9's ``Õ`` hides: a position whose candidates verify with
    probability ``ρ ≥ 1/m₀`` is passed within ``m₀·ln(N/δ)`` draws except with
    probability ``δ/N``, so a walk reaches the end of the response with probability
    ``≥ 1 − δ``. With ``m = m₀`` alone, a walk from the uniform base is truncated after
    ``1/(1 − 1/e) ≈ 1.6`` positions on average, whatever ``N``."""
    log_m = jnp.minimum(log_ceil(-log_q_tl), math.log(k))
    if delta is None:
        return log_m
    return log_m + log_ceil(jnp.log(jnp.log(jnp.asarray(length, jnp.float32) / delta)))


def hyper_with(log_m, lr: float = 1.0) -> lpg.Hyper:
    """A :class:`~lpg.Hyper` with a traced ``log m`` (no clipping)."""
    return lpg.Hyper(jnp.asarray(lr, jnp.float32), jnp.asarray(log_m, jnp.float32), jnp.asarray(jnp.inf, jnp.float32))


# ---------------------------------------------------------------------------------
# Slope records and verdicts
# ---------------------------------------------------------------------------------


def slope_record(fit: dict, theory: float, *, accept=None, log_x: bool = True, log_y: bool = True, note: str = "",
                 claim: str = "") -> dict:
    """``summary.json``'s ``slopes.<name>``: the fit (estimate, 95% CI, regime, counts of
    points, censored runs and not-estimable points), the theory exponent, the acceptance
    range and the verdict."""
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
    rec["verdict"] = verdict(rec)
    if claim:
        rec["claim"] = claim
    if note:
        rec["note"] = note
    return rec


def verdict(rec: dict) -> str:
    """``"confirmed"`` when the estimate lies in the acceptance range, ``"not confirmed"``
    when it does not, ``"not estimable"`` without an estimate, ``"reported"`` without a
    range."""
    est = rec.get("estimate")
    if est is None or not math.isfinite(est):
        return "not estimable"
    if "accept" not in rec:
        return "reported"
    lo, hi = rec["accept"]
    return "confirmed" if lo <= est <= hi else "not confirmed"


def fit_record(x, times, censored, *, theory: float, accept=None, log_x=True, log_y=True, regime=None,
               n_boot: int = 2000, seed: int = 0, note: str = "", claim: str = "") -> dict:
    """:func:`lpg.analysis.fit_slope` on per-run arrays, as a :func:`slope_record`."""
    fit = fit_slope(x, times, censored, log_x=log_x, log_y=log_y, regime=regime, n_boot=n_boot, seed=seed)
    return slope_record(fit, theory, accept=accept, log_x=log_x, log_y=log_y, note=note, claim=claim)


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


# ---------------------------------------------------------------------------------
# The scaling figure
# ---------------------------------------------------------------------------------


def scaling_series(ax, x, log10_y, censored, *, label: str, color, marker: str = "o", ls: str = "-",
                   jitter: float = 0.0, log_x: bool = True, seed: int = 0):
    """One series of a scaling figure: every run as a small dot (censored runs as hollow
    markers at their budget, i.e. lower bounds), the Kaplan–Meier median per ``x`` as a
    line with markers (points not estimable are left out). Returns ``(xs, medians)``
    (log10). ``jitter`` spreads runs horizontally (a fraction of a decade, or of the
    unit for a linear axis) so they do not overlap."""
    from lpg.analysis import censored_median

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



# ---------------------------------------------------------------------------------
# The planted α family: queries vs α (scaling-alpha) and vs ε (scaling-eps)
# ---------------------------------------------------------------------------------

FAMILY_ALGS = ("orm", "pg")
FAMILY_LABEL = {"orm": "Alg. 1 (best-of-m, ORM)", "pg": "on-policy PG (0/1 outcome)"}
FAMILY_COLOR = {"orm": plotting.COLORS["orm"], "pg": "#6c3483"}


def family_algorithm(name: str, batch_size: int):
    """Algorithm 1 (:class:`lpg.BestOfM`) or on-policy PG with the 0/1 outcome reward
    (:class:`lpg.PolicyGradient`, exact event path), both with the adaptive step."""
    if name == "orm":
        return lpg.BestOfM(batch_size=batch_size)
    return lpg.PolicyGradient("outcome", batch_size=batch_size, path="event")


def planted_alpha_runner(config: dict, alg_name: str):
    """``fn(key, log_alpha, eps)``: one run from the planted base with likelihood exactly
    ``α`` on ``y*`` for every context (:func:`lpg.tasks.planted_alpha_base`), until the
    likelihood is ``≥ 1 − ε`` on every context. ``α`` and ``ε`` are traced (one compile
    per algorithm). Every context has base likelihood ``α``, so ``Q_{q0}(ε) = α`` for
    every ``ε`` and Algorithm 1's ``m = min(⌈1/α⌉, k^N)``."""
    k, N = config["k"], config["N"]
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=N, gamma=config["gamma"],
                            n_contexts=config["n_contexts"])
    alg = family_algorithm(alg_name, config["batch_size"])
    max_steps = config[f"{alg_name}_max_steps"]
    check_every = config[f"{alg_name}_check_every"]

    def run(key, log_alpha, eps):
        w0 = lpg.tasks.planted_alpha_base(task, jnp.exp(log_alpha))
        problem = planted_problem(task, key=jax.random.PRNGKey(0), base=w0)
        ll = sequence_log_likelihoods(problem.fmap, w0, problem.track_x, problem.track_y)
        log_q = jnp.min(ll)  # = log α: every context has the same base likelihood
        log_m = orm_log_m(log_q, N, k) if alg_name == "orm" else jnp.inf
        hit = run_until(alg, problem, hyper_with(log_m), key, max_steps=max_steps, target=likelihood_at_least(eps),
                        check_every=check_every)
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_q0": log_q, "log_m": log_m}

    return run


def family_validate(config: dict, swept: str) -> None:
    from lpg import _checks

    _checks.int_at_least("k", config["k"], 2)
    _checks.int_at_least("N", config["N"], 1)
    gamma = _checks.in_open_closed("gamma", config["gamma"], 0.0, 1.0)
    s_max = max_planted_contexts(config["k"], gamma)
    _checks.int_at_least("n_contexts", config["n_contexts"], 1)
    if config["n_contexts"] > s_max:
        raise ValueError(f"n_contexts must be at most k/((k-1)*gamma^2) = {s_max}, got {config['n_contexts']}")
    for name in ("batch_size", "orm_max_steps", "pg_max_steps", "orm_check_every", "pg_check_every", "n_boot"):
        _checks.int_at_least(name, config[name], 1)
    _checks.int_at_least("task_seed", config["task_seed"], 0)
    for alg in ("orm", "pg"):
        if config[f"{alg}_max_steps"] % config[f"{alg}_check_every"]:
            raise ValueError(f"{alg}_check_every must divide {alg}_max_steps={config[f'{alg}_max_steps']}, "
                             f"got {config[f'{alg}_check_every']}")
    _checks.at_least("dominance", config["dominance"], 1.0)
    if not config["algs"]:
        raise ValueError("algs must list at least one of orm, pg")
    for a in config["algs"]:
        _checks.one_of("algs[i]", a, FAMILY_ALGS)
    fixed = "eps" if swept == "alpha" else "alpha"
    _checks.in_open(fixed, config[fixed], 0.0, 1.0)
    for key in (f"orm_{swept}s", f"pg_{swept}s"):
        vals = config[key]
        if len(vals) < 2:
            raise ValueError(f"{key} must hold at least two values, got {vals!r}")
        for v in vals:
            _checks.in_open(f"{key}[i]", v, 0.0, 1.0)


def family_sweep(config: dict, swept: str, *, seeds: int, out_dir, resume: bool, desc: str):
    """One sweep per algorithm over the swept values (``swept``: ``"alpha"`` or
    ``"eps"``), one chunk per value so each ``while_loop`` stops with its own slowest
    run. Returns per-run arrays (``alg``, ``x``, ``seed``, ``hit``, ``steps``,
    ``log_queries``, ``log_q0``, ``log_m``) and timings."""
    from lpg.sweep import sweep

    cols = {n: [] for n in ("alg", "x", "seed", "hit", "steps", "log_queries", "log_q0", "log_m")}
    timing = {"compile_s": 0.0, "run_s": 0.0}
    for alg in config["algs"]:
        values = config[f"{alg}_{swept}s"]
        if swept == "alpha":
            grid = {"log_alpha": [math.log(v) for v in values], "eps": [config["eps"]]}
        else:
            grid = {"log_alpha": [math.log(config["alpha"])], "eps": list(values)}
        ckpt = None if out_dir is None else out_dir / "sweeps" / alg
        res = sweep(planted_alpha_runner(config, alg), grid, seeds=seeds, chunk_size=seeds, out_dir=ckpt,
                    resume=resume, desc=f"{desc} {alg}", fingerprint={k: config[k] for k in sorted(config)})
        timing["compile_s"] += res.compile_s
        timing["run_s"] += res.run_s
        n = res.seed.shape[0]
        x = np.exp(res.settings["log_alpha"]) if swept == "alpha" else res.settings["eps"]
        cols["alg"].append(np.full(n, FAMILY_ALGS.index(alg)))
        cols["x"].append(np.asarray(x, np.float64))
        cols["seed"].append(res.seed)
        for name in ("hit", "steps", "log_queries", "log_q0", "log_m"):
            cols[name].append(np.asarray(res.outputs[name]))
    # the grid values as float32 are not exactly the configured ones: snap them back
    arrays = {n: np.concatenate(v) for n, v in cols.items()}
    configured = np.array(sorted({v for a in config["algs"] for v in config[f"{a}_{swept}s"]}), np.float64)
    arrays["x"] = configured[np.argmin(np.abs(np.log(arrays["x"][:, None]) - np.log(configured[None])), axis=1)]
    return arrays, timing


def family_regime(config: dict, swept: str) -> list[float]:
    """The regime of the claim, fixed by the settings: the swept values where its term
    dominates the other by the factor ``dominance`` (``1/α ≥ D/ε`` for α, ``1/ε ≥ D/α``
    for ε)."""
    D = config["dominance"]
    fixed = config["eps"] if swept == "alpha" else config["alpha"]
    return [0.0, fixed / D]


def family_summary(arrays: dict, config: dict, swept: str, claims: list[str]) -> dict:
    regime = family_regime(config, swept)
    slopes = {}
    for alg in config["algs"]:
        sel = arrays["alg"] == FAMILY_ALGS.index(alg)
        x = arrays["x"][sel]
        slopes[f"{alg}_queries_vs_{swept}"] = fit_record(
            x, arrays["log_queries"][sel], ~arrays["hit"][sel], theory=-1.0, accept=(-1.25, -0.75), log_x=True,
            log_y=False, regime=regime, n_boot=config["n_boot"], claim="C3" if alg == "orm" else "C2",
            note=f"log-log slope of queries vs {swept} where the {swept} term dominates "
                 f"({swept} <= {regime[1]:.3g}); queries = iterations x batch for PG")
    return {
        "experiment": f"scaling-{swept}",
        "claims": claims,
        "slopes": slopes,
        "regime_rule": (f"1/alpha >= {config['dominance']:g}/eps" if swept == "alpha"
                        else f"1/eps >= {config['dominance']:g}/alpha"),
        "censored_runs": int(np.sum(~arrays["hit"])),
        "runs": int(arrays["hit"].size),
    }


def family_figure(arrays: dict, config: dict, summary: dict, out_dir, swept: str, name: str, title: str):
    from matplotlib.lines import Line2D

    fig, (ax,) = plotting.figure(1, width=5.6, height=4.4)
    regime = family_regime(config, swept)
    gamma = config["gamma"]
    all_x = np.unique(arrays["x"])
    for alg in config["algs"]:
        sel = arrays["alg"] == FAMILY_ALGS.index(alg)
        color = FAMILY_COLOR[alg]
        x = arrays["x"][sel]
        y = arrays["log_queries"][sel] / LN10
        xs, med = scaling_series(ax, x, y, ~arrays["hit"][sel], label=FAMILY_LABEL[alg], color=color, jitter=0.05)
        rec = summary["slopes"][f"{alg}_queries_vs_{swept}"]
        in_reg = (xs >= regime[0]) & (xs <= regime[1])
        if in_reg.sum() >= 1:
            theory_overlay(ax, xs[in_reg], med[in_reg], -1.0, color=color,
                           label=f"slope −1 (fitted: {fmt_slope(rec)})")
        if alg == "orm":
            # the shape of C3, (1/α + 1/ε)/γ², with its constant fitted to the medians
            a = xs if swept == "alpha" else np.full_like(xs, config["alpha"])
            e = xs if swept == "eps" else np.full_like(xs, config["eps"])
            shape = np.log(1 / a + 1 / e)
            ok = np.isfinite(med)
            if ok.any():
                c = np.mean(med[ok] * LN10 - shape[ok])
                ax.plot(xs, (c + shape) / LN10, ls="-.", color=color, lw=1.0, alpha=0.8,
                        label="C3 shape (1/α + 1/ε)/γ², fitted constant")
    if swept == "alpha":
        lb = np.log10(1.0 / (all_x * gamma**2))
        lower_bound_overlay(ax, all_x, lb, label="lower bound 1/(α γ²) (C6)")
    ax.axvspan(all_x.min() / 1.5, regime[1], color="#f2f2f2", zorder=0, lw=0)
    ax.set_xscale("log")
    plotting.log10_axis(ax)
    ax.invert_xaxis()
    ax.set_xlabel("base likelihood α" if swept == "alpha" else "target ε (likelihood ≥ 1−ε)")
    ax.set_ylabel("reward queries to likelihood ≥ 1−ε")
    handles, _ = ax.get_legend_handles_labels()
    handles.append(censored_legend_handle())
    handles.append(Line2D([], [], lw=6, color="#f2f2f2", label="fitted regime"))
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left")
    ax.grid(alpha=0.25, which="both")
    fixed = f"ε = {config['eps']:g}" if swept == "alpha" else f"α = {config['alpha']:g}"
    ax.set_title(f"{title}\nplanted task k={config['k']}, N={config['N']}, γ={gamma:g}, {fixed}; "
                 f"{int(arrays['seed'].max()) + 1} seeds", fontsize=9)
    fig.tight_layout()
    return plotting.save(fig, out_dir, name)


class FamilyExperiment:
    """Mixin for ``scaling-alpha`` / ``scaling-eps``: set ``swept``, ``claims``,
    ``figure_title`` (and the :class:`~lpg.experiments.Experiment` attributes)."""

    swept: str
    claims: list
    figure_title: str

    def validate(self, config: dict) -> None:
        family_validate(config, self.swept)

    record_total = True

    def compute(self, config: dict, *, seeds: int, out_dir, resume: bool) -> tuple[dict, dict]:
        return family_sweep(config, self.swept, seeds=seeds, out_dir=out_dir, resume=resume, desc=self.name)

    def summarise(self, arrays: dict, config: dict) -> dict:
        return family_summary(arrays, config, self.swept, self.claims)

    def draw(self, arrays: dict, config: dict, summary: dict, out_dir) -> list:
        return family_figure(arrays, config, summary, out_dir, self.swept, self.name.replace("-", "_"),
                             self.figure_title)

    def table(self, summary: dict) -> str:
        return "\n".join([slopes_table(summary["slopes"]), f"regime: {summary['regime_rule']}",
                          f"censored runs: {summary['censored_runs']}/{summary['runs']}"])
