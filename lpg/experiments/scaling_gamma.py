"""``scaling-gamma``: reward queries vs the margin ``γ`` (claim C3, PAPER.md §4).

The planted-margin family of the lower bound (:class:`lpg.PlantedShift`): for each ``γ``
the task has the largest number of contexts the unit feature ball allows,
``S = k/((k−1)γ²)``, so the feature dimension ``D = S·k ≥ k/γ²`` grows as ``γ`` shrinks
— the regime of C6. The grid is over ``S`` (``γ = √(k/((k−1)S))``), so the per-token
feature scale is exactly 1 and the margin exactly ``γ``. The base model puts likelihood
exactly ``α`` on ``y*`` for every context (:func:`lpg.tasks.planted_alpha_base`).

Measured: Algorithm 1's queries (best-of-m, outcome reward, ``m = ⌈1/α⌉``) until
``p_w(y*|x) ≥ 1 − ε`` on every context. C3: ``Q = Õ((1/α + 1/ε)/γ²)`` — slope −2 in
``γ`` (acceptance ``[−2.5, −1.5]``); the lower bound C6, ``Ω̃(1/(α γ²))``, is drawn
without a fitted constant. Each context is a copy of the same problem (feature scale 1),
so the whole ``1/γ²`` comes from the ``D/k = S`` directions that each need their own
successes: queries per context (the figure's second panel) should stay flat up to the
logarithmic cost of waiting for the slowest of ``S`` contexts (the target is per
sample), the Õ of the claim.

Both readings of the adaptive step (``step_units``): ``response`` (the paper's, one step on
the accepted response) and ``token`` (one adaptive step per token of it, in order;
:class:`lpg.BestOfM`'s ``step_unit``), each with the same test, its records named by its
reading (``orm_token_*`` for the second). A slope confirmed under one reading only is
``conditional (on …)`` it; ``summary.verdict`` states C3 under each reading and overall.
The time is mostly compiling (one program per ``S`` and reading), so the per-token reading
runs at the ``S`` of ``Ss`` in ``token_Ss`` (default 2, 8 and 64: the whole range of ``γ``).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

import lpg
from lpg import plotting
from lpg.algorithms.base import READINGS
from lpg.analysis import (checks_line, claim_under_readings, fit_record, fmt_slope, mark_conditional, slopes_table,
                          under_reading)
from lpg.hitting import likelihood_at_least, run_until
from lpg.metrics import sequence_log_likelihoods
from lpg.problem import planted_problem
from lpg.spec import Choices, Experiment, Ints, Profile, Real, Sweep, common, divides
from lpg.theory import orm_log_m

LN10 = math.log(10.0)
UNIT = dict(low=0.0, high=1.0, open_low=True, open_high=True)


TOKEN_SS = [2, 8, 64]
"""The per-token reading's ``S`` at the default: three of the six, over the whole range of ``γ``
(the experiment's time is mostly compiling, one program per ``S`` and reading)."""


def token_Ss(config: dict) -> list[int]:
    """The ``S`` of the per-token reading: those of ``Ss`` in ``token_Ss``."""
    return [S for S in config["Ss"] if S in config["token_Ss"]]


def _token_grid(c: dict):
    if "token" in c["step_units"] and len(token_Ss(c)) < 2:
        return f"token_Ss must hold at least 2 of Ss={c['Ss']} for the per-token reading, got {c['token_Ss']}"
    return None


def gamma_of(k: int, S: int) -> float:
    """The margin at which the unit feature ball holds exactly ``S`` planted contexts."""
    return math.sqrt(k / ((k - 1) * S))


def make_run(config: dict, S: int, step_unit: str = "response"):
    """``fn(key)``: one run of Algorithm 1 on the planted task with ``S`` contexts, the
    adaptive step read as ``step_unit``."""
    k, N = config["k"], config["N"]
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=N, gamma=gamma_of(k, S), n_contexts=S)
    alg = lpg.BestOfM(batch_size=config["batch_size"], step_unit=step_unit)
    w0 = lpg.tasks.planted_alpha_base(task, config["alpha"])
    target = likelihood_at_least(config["eps"])

    def run(key):
        problem = planted_problem(task, key=jax.random.PRNGKey(0), base=w0)
        log_q = jnp.min(sequence_log_likelihoods(problem.fmap, w0, problem.track_x, problem.track_y))
        hyper = lpg.Hyper(jnp.float32(1.0), orm_log_m(log_q, N, k).astype(jnp.float32), jnp.float32(jnp.inf))
        hit = run_until(alg, problem, hyper, key, max_steps=config["max_steps"], target=target,
                        check_every=config["check_every"])
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_q0": log_q}

    return run


def name_of(unit: str, quantity: str) -> str:
    return f"orm{'' if unit == 'response' else '_' + unit}_{quantity}"


def summary_of(table, config: dict) -> dict:
    n_boot, slopes, totals = config["n_boot"], {}, {}
    for unit in config["step_units"]:
        sel = under_reading(table, unit)
        g, lq, cens = table["gamma"][sel], table["log_queries"][sel], ~table["hit"][sel]
        total = fit_record(g, lq, cens, theory=-2.0, accept=(-2.5, -1.5), log_x=True, log_y=False, n_boot=n_boot,
                           note=f"log-log slope of queries vs gamma, D = S k >= k/gamma^2; {READINGS[unit]}",
                           claim="C3")
        per_ctx = fit_record(g, lq - np.log(table["S"][sel]), cens, theory=0.0, log_x=True, log_y=False,
                             n_boot=n_boot, note=f"queries per context vs gamma (the O~ part); {READINGS[unit]}",
                             claim="C3")
        total["reading"] = per_ctx["reading"] = unit
        slopes[name_of(unit, "queries_vs_gamma")] = totals[READINGS[unit]] = total
        slopes[name_of(unit, "queries_per_context_vs_gamma")] = per_ctx
    mark_conditional(totals)
    cens = ~table["hit"]
    return {"experiment": "scaling-gamma", "claims": ["C3"], "slopes": slopes,
            "verdict": claim_under_readings("C3", {r: [rec] for r, rec in totals.items()}),
            "gammas": sorted(set(table["gamma"].tolist()), reverse=True), "censored_runs": int(np.sum(cens)),
            "runs": int(cens.size)}


def figure(table, config: dict, summary: dict, out_dir: Path) -> list[Path]:
    fig, axes = plotting.figure(2, width=5.0, height=4.2)
    color, units = plotting.COLORS["orm"], list(config["step_units"])
    for unit in units:
        t = table.rows(under_reading(table, unit))
        g, cens, token = t["gamma"], ~t["hit"], unit == "token"
        style = dict(color="#e08a3c" if token else color, marker="D" if token else "o", ls="-." if token else "-")
        rec, rec2 = (summary["slopes"][name_of(unit, q)] for q in ("queries_vs_gamma", "queries_per_context_vs_gamma"))
        xs, med = plotting.scaling_series(axes[0], g, t["log_queries"] / LN10, cens, jitter=0.02,
                                          label="Alg. 1 (best-of-m, ORM)" + (", per-token step" if token else ""),
                                          **style)
        plotting.theory_overlay(axes[0], xs, med, -2.0, color=style["color"],
                                label=f"slope −2 (fitted: {fmt_slope(rec)})")
        plotting.scaling_series(axes[1], g, np.exp(t["log_queries"] - np.log(t["S"])), cens, jitter=0.02,
                                label=f"queries / S{', per token' if token else ''} (slope {fmt_slope(rec2)})",
                                **style)
    ax, gs = axes[0], np.asarray(sorted(set(table["gamma"].tolist())))
    plotting.lower_bound_overlay(ax, gs, np.log10(1.0 / (config["alpha"] * gs**2)),
                                 label="lower bound 1/(α γ²) (C6)")
    ax.set_ylabel("reward queries to likelihood ≥ 1−ε")
    ax.set_title("(a) C3: queries ∝ 1/γ²", fontsize=10)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + [plotting.censored_legend_handle()], fontsize=7,
              frameon=False)
    ax = axes[1]
    ax.set(ylim=(0, None), ylabel="reward queries per context (linear axis)")
    ax.set_title("(b) per context: the Õ part", fontsize=10)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + [Line2D([], [], ls="none", label="S = k/((k−1)γ²)")],
              fontsize=7, frameon=False)
    plotting.log10_axis(axes[0])
    for ax in axes:
        ax.set(xscale="log", xlabel="margin γ (contexts S = k/((k−1)γ²), D = S·k)")
        ax.set_xticks(gs, [f"{v:.2g}" for v in gs])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.grid(alpha=0.25, which="both")
    title = (f"planted-margin family, k={config['k']}, N={config['N']}, α={config['alpha']:g}, "
             f"ε={config['eps']:g}; Kaplan–Meier medians over {len(np.unique(table['seed']))} seeds")
    return plotting.save(fig, out_dir, "scaling_gamma", title, fontsize=10)


class ScalingGamma(Experiment):
    name = "scaling-gamma"
    description = "C3: queries to likelihood 1-eps vs margin gamma on the planted family with D >= k/gamma^2, slope -2"
    claims = ("C3",)
    settings = {
        **common(k=4, N=12, batch_size=1, max_steps=400000, check_every=20, task_seed=0, n_boot=2000),
        # S >= 2 is S >= k/(k-1) (gamma <= 1) for every integer k >= 2
        "Ss": Ints([2, 4, 8, 16, 32, 64], "context counts S, gamma = sqrt(k/((k-1) S)) <= 1", low=2, min_len=2,
                   increasing=True),
        "alpha": Real(1e-3, "base likelihood of y* on every context", **UNIT),
        "eps": Real(0.1, "target: likelihood >= 1 - eps on every context", **UNIT),
        "step_units": Choices(list(READINGS), "readings of the adaptive step: response (one step per accepted "
                              "response, the paper's), token (one per token of it)", tuple(READINGS)),
        "token_Ss": Ints(TOKEN_SS, "the per-token reading runs at the S of Ss also in this list (each S is its own "
                                   "compile)", low=2, distinct=True),
    }
    constraints = (divides("check_every", "max_steps"), _token_grid)
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {"Ss": "2,4,8,16,32,64,128,256", "token_Ss": "2,4,8,16,32,64,128,256"}),
        "quick": Profile(4, {"Ss": "2,4,8", "n_boot": "300"}),
    }

    def sweeps(self, config):
        """One sweep per ``S`` and reading of the step (its own compile), all seeds in one chunk."""
        for unit in config["step_units"]:
            for S in token_Ss(config) if unit == "token" else config["Ss"]:
                yield Sweep(f"S{S}" + ("" if unit == "response" else f"_{unit}"), make_run(config, S, unit),
                            tags={"S": S, "gamma": gamma_of(config["k"], S), "step_unit": unit})

    summarise = staticmethod(summary_of)
    draw = staticmethod(figure)

    def text(self, summary: dict) -> str:
        return "\n".join([slopes_table(summary["slopes"]),
                          f"censored runs: {summary['censored_runs']}/{summary['runs']}",
                          checks_line(summary.get("verdict") or {})])
