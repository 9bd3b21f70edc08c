"""``baselines``: the advantage estimators of LLM practice do not escape the
Likelihood-Quantile barrier of outcome rewards (claims C4–C6, PAPER.md §3–4).

The paper's lower bound (C6) is over every ORM method, so no advantage estimator can
improve the worst-case ``1/(Q_{q0}(ε)γ²)`` rate. Here the estimators used in practice
run side by side on the same task from the same base models:

* ``none_01``: REINFORCE, 0/1 reward;
* ``none_pm1``: REINFORCE, ±1 reward (failures push their sample down);
* ``batch_mean_pm1``: ±1 reward minus the batch mean (the authors' ORM baseline);
* ``rloo_01``: leave-one-out mean of the group (RLOO), 0/1 reward;
* ``grpo_01``: group-normalised ``(r − mean)/std`` (GRPO), 0/1 reward (GRPO is invariant
  to an affine change of reward, so ±1 gives the same advantages).

All are on-policy :class:`lpg.PolicyGradient` on the *sampled* path (real responses,
since failures matter to every estimator but the first), ``batch_size`` contexts ×
``group_size`` samples per step, the paper's adaptive step. Task: the planted-margin
family (margin exactly ``γ``, ``S`` contexts, uniform); base model
:func:`lpg.tasks.planted_alpha_base` with ``q0(y*|x) = α`` on every context, so
``Q_{q0}(ε) = α`` exactly. Measured: reward queries until the exact error is ``≤ ε``
(:func:`lpg.hitting.run_until`; budget-censored runs are kept), and the fraction of
zero-variance groups (every sample in the group got the same reward; ``StepMetrics``),
probed with ``n_probe`` independent steps at the base model and at the weights where the
run stopped. At the base it is exactly ``(1 − α)^G + α^G`` per group, drawn as the
reference: with a low LQ nearly every group fails together, and RLOO and GRPO then
have *zero* advantage — no update at all.

Why none can escape (in expectation): a baseline ``b`` that does not depend on the
sample adds ``E[b ∇log p_w(y|x)] = 0``, and ±1 rewards add ``−E[∇log p_w] = 0``; the mean
update is always ``∝ E[r ∇log p_w] = p_w(y*|x) ∇log p_w(y*|x)``, which vanishes with
the likelihood of ``y*``. Fit: slope of ``ln(queries)`` against ``ln(1/Q)`` where
``1/Q ≥ regime_min`` (theory 1 for every estimator); an estimator *escapes* if its
slope is significantly below 1 (95% interval entirely below ``escape_below``) with every
point of the regime estimable (a point with most runs censored is costlier, not
cheaper). The cost is ``≈ A + B/Q``: the α-independent part ``A`` (learning once the
first successes arrive) keeps the local slope below 1 until ``B/Q ≫ A``; at the CPU
default that is only reached near ``1/Q = 10^4``, so slopes there read ≈ 0.8 for every
estimator alike. ``GPU_SETTINGS`` extend α to 1e-5.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import _checks, plotting
from lpg.analysis import censored_median
from lpg.experiments import Experiment, register
from lpg.experiments._scaling import (
    censored_legend_handle,
    fit_record,
    planted_problem,
    scaling_series,
    slopes_table,
    theory_overlay,
)
from lpg.features import max_planted_contexts
from lpg.hitting import error_at_most, run_until

LN10 = math.log(10.0)
VARIANTS: dict[str, dict] = {
    "none_01": {},
    "none_pm1": {"signed": True},
    "batch_mean_pm1": {"signed": True, "baseline": "batch_mean"},
    "rloo_01": {"baseline": "rloo"},
    "grpo_01": {"baseline": "grpo"},
}
LABELS = {"none_01": "none, 0/1", "none_pm1": "none, $\\pm 1$", "batch_mean_pm1": "batch mean, $\\pm 1$",
          "rloo_01": "RLOO, 0/1", "grpo_01": "GRPO, 0/1"}
COLORS = {"none_01": "#1f5fa8", "none_pm1": "#5dade2", "batch_mean_pm1": "#c0392b", "rloo_01": "#27ae60",
          "grpo_01": "#8e44ad"}

DEFAULTS: dict[str, Any] = {
    "variants": list(VARIANTS),
    "k": 4,
    "N": 8,
    "gamma": 0.5,
    "n_contexts": 2,
    "eps": 0.1,
    "batch_size": 2,
    "group_size": 4,
    "log10_alphas": [-2.0, -2.5, -3.0, -3.5, -4.0],
    "regime_min": 300.0,
    "escape_below": 0.75,
    "max_steps": 40000,
    "check_every": 20,
    "n_probe": 64,
    "chunk_size": 16,
}
"""CPU default (about 3 minutes on 2 cores with 16 seeds)."""

GPU_SETTINGS: dict[str, Any] = {
    "N": 16,
    "gamma": 0.25,
    "n_contexts": 21,
    "batch_size": 8,
    "group_size": 8,
    "log10_alphas": [-2.0, -2.5, -3.0, -3.5, -4.0, -4.5, -5.0],
    "max_steps": 400000,
    "check_every": 100,
    "chunk_size": 0,
}
"""Overrides for a GPU (``--set`` each, ``--seeds 64``): S = 21 contexts, groups of 8,
and α down to 1e-5, where the 1/α regime is wide."""


def validate(config: dict) -> None:
    names = config["variants"]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"variants must list distinct estimators, got {names!r}")
    for v in names:
        _checks.one_of("variants[i]", v, VARIANTS)
    k = _checks.int_at_least("k", config["k"], 2)
    _checks.int_at_least("N", config["N"], 1)
    g = _checks.in_open_closed("gamma", config["gamma"], 0.0, 1.0)
    s_max = max_planted_contexts(k, g)
    if s_max < 1:
        raise ValueError(f"gamma must allow at least one planted context for k={k}, got {g}")
    _checks.int_at_least("n_contexts", config["n_contexts"], 1)
    if config["n_contexts"] > s_max:
        raise ValueError(f"n_contexts must be at most k/((k-1)*gamma^2) = {s_max}, got {config['n_contexts']}")
    _checks.in_open("eps", config["eps"], 0.0, 1.0)
    _checks.int_at_least("batch_size", config["batch_size"], 1)
    _checks.int_at_least("group_size", config["group_size"], 2)
    vals = config["log10_alphas"]
    if len(vals) < 2 or any(not (-30.0 < float(v) < 0.0) for v in vals):
        raise ValueError(f"log10_alphas must hold at least two log10 likelihoods in (-30, 0), got {vals!r}")
    _checks.positive("regime_min", config["regime_min"])
    _checks.positive("escape_below", config["escape_below"])
    for name in ("max_steps", "check_every", "n_probe"):
        _checks.int_at_least(name, config[name], 1)
    if config["max_steps"] % config["check_every"]:
        raise ValueError(f"check_every must divide max_steps={config['max_steps']}, got {config['check_every']}")
    _checks.int_at_least("chunk_size", config["chunk_size"], 0)


def algorithm(config: dict, variant: str) -> lpg.PolicyGradient:
    return lpg.PolicyGradient("outcome", batch_size=config["batch_size"], group_size=config["group_size"],
                              path="sample", **VARIANTS[variant])


def make_run(config: dict, variant: str):
    """``run(key, log10_alpha)``: queries until error ``≤ ε`` and the zero-variance
    fraction of ``n_probe`` independent steps at the base model and at the final weights."""
    alg = algorithm(config, variant)
    hyper = lpg.hyper()

    def probe(problem, w, key):
        state = alg.init(w, hyper)
        keys = jax.random.split(key, config["n_probe"])
        return jnp.mean(jax.vmap(lambda kk: alg.step(state, kk, problem, hyper)[1].zero_var)(keys))

    def run(key, log10_alpha):
        k_task, k_run, k_p0, k_p1 = jax.random.split(key, 4)
        task = lpg.make_planted(k_task, k=config["k"], N=config["N"], gamma=config["gamma"],
                                n_contexts=config["n_contexts"])
        w0 = lpg.tasks.planted_alpha_base(task, 10.0 ** jnp.asarray(log10_alpha, jnp.float32))
        problem = planted_problem(task, key=k_task, base=w0)
        log_lq = lpg.likelihood_quantile(lpg.tasks.log_alpha_planted_base(task, w0), config["eps"])
        hit = run_until(alg, problem, hyper, k_run, max_steps=config["max_steps"],
                        target=error_at_most(config["eps"]), check_every=config["check_every"])
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_lq": log_lq,
                "zero_var_base": probe(problem, w0, k_p0), "zero_var_end": probe(problem, hit.final_w, k_p1)}

    return run


def zero_var_exact(alpha: np.ndarray, G: int) -> np.ndarray:
    """Probability that a group of ``G`` samples, each correct with probability ``α``,
    gets one reward for all: ``(1 − α)^G + α^G``."""
    a = np.asarray(alpha, np.float64)
    return (1.0 - a) ** G + a**G


def summary_of(arrays: dict, config: dict) -> dict:
    G = config["group_size"]
    slopes, points, escapes = {}, {}, {}
    for v in config["variants"]:
        la = arrays[f"{v}_log10_alpha"].astype(np.float64)
        inv_q = np.exp(-arrays[f"{v}_log_lq"].astype(np.float64))
        t = arrays[f"{v}_log_queries"].astype(np.float64)
        cens = ~arrays[f"{v}_hit"].astype(bool)
        rec = fit_record(inv_q, t, cens, theory=1.0, accept=(0.75, 1.25), log_x=True, log_y=False,
                         regime=[config["regime_min"], math.inf],
                         note="d ln(queries) / d ln(1/Q_q0(eps)) where 1/Q >= regime_min")
        slopes[f"{v}_vs_invQ"] = rec
        # An escape needs every point of the regime estimable: a point with most runs
        # censored is *costlier*, and dropping it would flatten the slope spuriously.
        hi = rec["ci"][1]
        escapes[v] = bool(rec["n_unestimable"] == 0 and hi is not None and math.isfinite(hi)
                          and hi < config["escape_below"])
        alphas = sorted(set(la.tolist()))
        zb = arrays[f"{v}_zero_var_base"].astype(np.float64)
        ze = arrays[f"{v}_zero_var_end"].astype(np.float64)
        points[v] = {
            "log10_alpha": alphas,
            "log10_median_queries": [censored_median(t[la == a], cens[la == a]) / LN10 for a in alphas],
            "censored_fraction": [float(cens[la == a].mean()) for a in alphas],
            "zero_var_base": [float(zb[la == a].mean()) for a in alphas],
            "zero_var_base_exact": zero_var_exact(10.0 ** np.asarray(alphas), G).tolist(),
            "zero_var_end": [float(ze[la == a].mean()) for a in alphas],
        }
    return {
        "experiment": "baselines",
        "claims": ["C6"],
        "slopes": slopes,
        "points": points,
        "escapes": escapes,
        "verdict": {
            "no_estimator_escapes": not any(escapes.values()),
            "every_slope_near_1": all(slopes[f"{v}_vs_invQ"]["verdict"] == "confirmed" for v in config["variants"]),
        },
        "units": {
            "queries": "reward queries until err(w) <= eps (exact, all S contexts); KM medians, log10",
            "zero_var": "fraction of groups whose samples all got the same reward, mean over n_probe steps and seeds",
        },
    }


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], np.float64)


def figure(arrays: dict, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    G = config["group_size"]
    n_seeds = int(config.get("seeds", 0))
    fig, ax = plotting.figure(3, width=4.6, height=3.8)
    first = config["variants"][0]
    ref = _floats(summary["points"][first]["log10_median_queries"])
    for v in config["variants"]:
        lq = arrays[f"{v}_log_lq"].astype(np.float64)
        cens = ~arrays[f"{v}_hit"].astype(bool)
        y = arrays[f"{v}_log_queries"].astype(np.float64) / LN10
        xs, med = scaling_series(ax[0], np.exp(-lq), y, cens, label=LABELS[v], color=COLORS[v], jitter=0.04)
        if v == first:
            reg = xs >= config["regime_min"]
            theory_overlay(ax[0], xs[reg], med[reg], 1.0, color="0.3",
                           label="theory $\\propto 1/Q_{q_0}(\\varepsilon)$, fitted constant")
        p = summary["points"][v]
        x = 10.0 ** -np.asarray(p["log10_alpha"])
        ax[1].plot(x, _floats(p["log10_median_queries"]) - ref, "o-", color=COLORS[v], ms=3.5, label=LABELS[v])
        ax[2].plot(x, p["zero_var_base"], "o-", color=COLORS[v], ms=3.5, label=f"{LABELS[v]}")
        ax[2].plot(x, p["zero_var_end"], "s:", color=COLORS[v], ms=3, alpha=0.7)
    x = 10.0 ** -np.asarray(summary["points"][first]["log10_alpha"])
    xx = np.geomspace(x.min(), x.max(), 100)
    ax[2].plot(xx, zero_var_exact(1.0 / xx, G), "k--", lw=1, label=f"exact at base: $(1-\\alpha)^G+\\alpha^G$, G={G}")
    ax[0].set(title=f"reward queries to error $\\leq {config['eps']:g}$", xlabel="$1/Q_{q_0}(\\varepsilon)$",
              ylabel="reward queries")
    plotting.log10_axis(ax[0], "y")
    handles, _ = ax[0].get_legend_handles_labels()
    handles.append(censored_legend_handle())
    ax[0].legend(handles=handles, fontsize=6, loc="upper left", frameon=False)
    ax[1].axhline(0.0, color="0.5", lw=0.8)
    ax[1].set(title=f"median queries relative to {LABELS[first]}", xlabel="$1/Q_{q_0}(\\varepsilon)$",
              ylabel="log10 ratio of medians")
    ax[1].legend(fontsize=6, loc="best", frameon=False)
    ax[2].set(title="zero-variance groups (solid: base, dotted: end)", xlabel="$1/Q_{q_0}(\\varepsilon)$",
              ylabel="fraction of groups", ylim=(-0.02, 1.02))
    ax[2].legend(fontsize=6, loc="lower right", frameon=False)
    for a in ax:
        a.set_xscale("log")
        a.grid(alpha=0.25, which="both")
    fig.suptitle(f"{name}: advantage estimators vs the LQ barrier; planted k={config['k']}, N={config['N']}, "
                 f"$\\gamma$={config['gamma']:g}, S={config['n_contexts']}, B={config['batch_size']}, G={G}; "
                 f"dots: runs, lines: Kaplan-Meier medians over {n_seeds} seeds", fontsize=9)
    fig.tight_layout()
    return plotting.save(fig, out_dir, name)


def table(summary: dict) -> str:
    rows = [("estimator", "zero-var at base (exact)", "zero-var at end", "escapes")]
    for v in summary["points"]:
        p = summary["points"][v]
        zv = f"{p['zero_var_base'][0]:.4f} ({p['zero_var_base_exact'][0]:.4f})"
        rows.append((v, zv, f"{p['zero_var_end'][0]:.3f}", "YES" if summary["escapes"][v] else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [slopes_table(summary["slopes"])]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    ver = summary["verdict"]
    lines.append("zero-var columns: at the smallest alpha; slopes: ln(queries to error <= eps) vs ln(1/Q)")
    lines.append(f"no estimator escapes the LQ barrier: {'yes' if ver['no_estimator_escapes'] else 'NO'}; "
                 f"every slope near 1: {'yes' if ver['every_slope_near_1'] else 'NO'}")
    return "\n".join(lines)


@register
class Baselines(Experiment):
    name = "baselines"
    description = "LLM-practice advantages (none, batch mean, RLOO, GRPO): zero-variance groups, none escapes the LQ barrier"
    defaults = DEFAULTS
    default_seeds = 16

    validate = staticmethod(validate)

    def compute(self, config: dict, *, seeds: int, out_dir: Path, resume: bool) -> tuple[dict, dict]:
        arrays, timing = {}, {}
        for v in config["variants"]:
            result = self.sweep_part(make_run(config, v), {"log10_alpha": [float(a) for a in config["log10_alphas"]]},
                                     config, seeds=seeds, out_dir=out_dir, resume=resume, part=v, variant=v)
            for key, value in result.outputs.items():
                arrays[f"{v}_{key}"] = value
            arrays[f"{v}_log10_alpha"] = result.settings["log10_alpha"]
            arrays[f"{v}_seed"] = result.seed
            timing[v] = result.timing
        return arrays, timing

    summarise = staticmethod(summary_of)

    def draw(self, arrays: dict, config: dict, summary: dict, out_dir: Path) -> list[Path]:
        return figure(arrays, config, summary, out_dir, self.name)

    def table(self, summary: dict) -> str:
        return table(summary) + "\n" + self.compute_line(summary)
