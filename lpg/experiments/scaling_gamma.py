"""``scaling-gamma``: reward queries vs the margin ``γ`` (claim C3, PAPER.md §4).

The planted-margin family of the lower bound (:class:`lpg.PlantedShift`): for each ``γ``
the task has the largest number of contexts the unit feature ball allows,
``S = k/((k−1)γ²)``, so the feature dimension ``D = S·k ≥ k/γ²`` grows as ``γ`` shrinks
— the regime of C6. The ``γ`` grid is chosen so that ``S`` is an integer
(``γ = √(k/((k−1)S))`` for ``S = 2, 4, …, 64``); then the per-token feature scale is
exactly 1 and the margin exactly ``γ``. The base model puts likelihood exactly ``α`` on
``y*`` for every context (:func:`lpg.tasks.planted_alpha_base`).

Measured: Algorithm 1's queries (best-of-m, outcome reward, ``m = ⌈1/α⌉``) until
``p_w(y*|x) ≥ 1 − ε`` on every context. C3: ``Q = Õ((1/α + 1/ε)/γ²)`` — slope −2 in
``γ`` (acceptance ``[−2.5, −1.5]``); the lower bound C6, ``Ω̃(1/(α γ²))``, is drawn
without a fitted constant. In this family each context is a copy of the same problem
(feature scale 1), so the whole ``1/γ²`` comes from the ``D/k = S`` directions that each
need their own successes; the figure's second panel shows queries per context, which
should stay flat up to the logarithmic cost of waiting for the slowest context (the
target is per sample, a maximum over ``S`` contexts), the Õ of the claim. Every ``γ``
has its own ``S`` and so its own compile.

CPU default: 6 values of ``γ`` × 16 seeds. GPU: ``--seeds 64 --set Ss=2,4,8,16,32,64,128,256``.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import _checks, plotting
from lpg.experiments import Experiment, register
from lpg.experiments import _scaling as sc
from lpg.hitting import likelihood_at_least, run_until
from lpg.sweep import sweep


def gamma_of(k: int, S: int) -> float:
    """The margin at which the unit feature ball holds exactly ``S`` planted contexts."""
    return math.sqrt(k / ((k - 1) * S))


def make_run(config: dict, S: int):
    k, N, eps = config["k"], config["N"], config["eps"]
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=N, gamma=gamma_of(k, S), n_contexts=S)
    alg = lpg.BestOfM(batch_size=config["batch_size"])
    w0 = lpg.tasks.planted_alpha_base(task, config["alpha"])
    target = likelihood_at_least(eps)

    def run(key):
        problem = sc.planted_problem(task, key=jax.random.PRNGKey(0), base=w0)
        log_q = jnp.min(lpg.metrics.sequence_log_likelihoods(problem.fmap, w0, problem.track_x, problem.track_y))
        hit = run_until(alg, problem, sc.hyper_with(sc.orm_log_m(log_q, N, k)), key, max_steps=config["max_steps"],
                        target=target, check_every=config["check_every"])
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_q0": log_q}

    return run


def validate(config: dict) -> None:
    k = _checks.int_at_least("k", config["k"], 2)
    _checks.int_at_least("N", config["N"], 1)
    Ss = config["Ss"]
    if len(Ss) < 2 or sorted(set(Ss)) != list(Ss):
        raise ValueError(f"Ss must be at least two increasing context counts, got {Ss!r}")
    for S in Ss:
        _checks.int_at_least("Ss[i]", S, 1)
        if gamma_of(k, S) > 1.0:
            raise ValueError(f"Ss[i] must be >= k/(k-1) so that gamma <= 1, got {S} for k={k}")
    _checks.in_open("alpha", config["alpha"], 0.0, 1.0)
    _checks.in_open("eps", config["eps"], 0.0, 1.0)
    for name in ("batch_size", "max_steps", "check_every", "n_boot"):
        _checks.int_at_least(name, config[name], 1)
    _checks.int_at_least("task_seed", config["task_seed"], 0)
    if config["max_steps"] % config["check_every"]:
        raise ValueError(f"check_every must divide max_steps={config['max_steps']}, got {config['check_every']}")


def run_all(config: dict, *, seeds: int, out_dir: Path | None, resume: bool):
    cols = {n: [] for n in ("S", "gamma", "seed", "hit", "steps", "log_queries", "log_q0")}
    timing = {"compile_s": 0.0, "run_s": 0.0}
    for S in config["Ss"]:
        ckpt = None if out_dir is None else Path(out_dir) / "sweeps" / f"S{S}"
        res = sweep(make_run(config, S), {}, seeds=seeds, out_dir=ckpt, resume=resume,
                    desc=f"scaling-gamma S={S}", fingerprint={**{k: config[k] for k in sorted(config)}, "S": S})
        timing["compile_s"] += res.compile_s
        timing["run_s"] += res.run_s
        n = res.seed.shape[0]
        cols["S"].append(np.full(n, S))
        cols["gamma"].append(np.full(n, gamma_of(config["k"], S)))
        cols["seed"].append(res.seed)
        for name in ("hit", "steps", "log_queries", "log_q0"):
            cols[name].append(np.asarray(res.outputs[name]))
    return {n: np.concatenate(v) for n, v in cols.items()}, timing


def summary_of(arrays: dict, config: dict) -> dict:
    g, lq, cens = arrays["gamma"], arrays["log_queries"], ~arrays["hit"]
    total = sc.fit_record(g, lq, cens, theory=-2.0, accept=(-2.5, -1.5), log_x=True, log_y=False,
                          n_boot=config["n_boot"], note="log-log slope of queries vs gamma, D = S k >= k/gamma^2",
                          claim="C3")
    per_ctx = sc.fit_record(g, lq - np.log(arrays["S"]), cens, theory=0.0, log_x=True, log_y=False,
                            n_boot=config["n_boot"], note="queries per context vs gamma (the O~ part)", claim="C3")
    return {
        "experiment": "scaling-gamma",
        "claims": ["C3"],
        "slopes": {"orm_queries_vs_gamma": total, "orm_queries_per_context_vs_gamma": per_ctx},
        "gammas": sorted(set(g.tolist()), reverse=True),
        "censored_runs": int(np.sum(cens)),
        "runs": int(cens.size),
    }


def figure(arrays: dict, config: dict, summary: dict, out_dir: Path) -> list[Path]:
    from matplotlib.lines import Line2D

    fig, axes = plotting.figure(2, width=5.0, height=4.2)
    g, cens = arrays["gamma"], ~arrays["hit"]
    color = sc.FAMILY_COLOR["orm"]
    n_seeds = int(np.unique(arrays["seed"]).size)
    ax = axes[0]
    rec = summary["slopes"]["orm_queries_vs_gamma"]
    xs, med = sc.scaling_series(ax, g, arrays["log_queries"] / sc.LN10, cens, label="Alg. 1 (best-of-m, ORM)",
                                color=color, jitter=0.02)
    sc.theory_overlay(ax, xs, med, -2.0, color=color, label=f"slope −2 (fitted: {sc.fmt_slope(rec)})")
    gs = np.asarray(sorted(set(g.tolist())))
    sc.lower_bound_overlay(ax, gs, np.log10(1.0 / (config["alpha"] * gs**2)), label="lower bound 1/(α γ²) (C6)")
    ax.set_ylabel("reward queries to likelihood ≥ 1−ε")
    ax.set_title("(a) C3: queries ∝ 1/γ²", fontsize=10)
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + [sc.censored_legend_handle()], fontsize=7, frameon=False)
    ax = axes[1]
    rec2 = summary["slopes"]["orm_queries_per_context_vs_gamma"]
    sc.scaling_series(ax, g, np.exp(arrays["log_queries"] - np.log(arrays["S"])), cens, color=color,
                      label=f"queries / S (slope {sc.fmt_slope(rec2)})", jitter=0.02)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("reward queries per context (linear axis)")
    ax.set_title("(b) per context: the Õ part", fontsize=10)
    ax.legend(handles=ax.get_legend_handles_labels()[0] + [Line2D([], [], ls="none", label="S = k/((k−1)γ²)")],
              fontsize=7, frameon=False)
    plotting.log10_axis(axes[0])
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(gs, [f"{v:.2g}" for v in gs])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel("margin γ (contexts S = k/((k−1)γ²), D = S·k)")
        ax.grid(alpha=0.25, which="both")
    fig.suptitle(f"planted-margin family, k={config['k']}, N={config['N']}, α={config['alpha']:g}, "
                 f"ε={config['eps']:g}; Kaplan–Meier medians over {n_seeds} seeds", fontsize=10)
    fig.tight_layout()
    return plotting.save(fig, out_dir, "scaling_gamma")


@register
class ScalingGamma(Experiment):
    name = "scaling-gamma"
    description = "C3: queries to likelihood 1-eps vs margin gamma on the planted family with D >= k/gamma^2, slope -2"
    defaults = {
        "k": 4,
        "N": 12,
        "Ss": [2, 4, 8, 16, 32, 64],
        "alpha": 1e-3,
        "eps": 0.1,
        "batch_size": 1,
        "max_steps": 400000,
        "check_every": 20,
        "task_seed": 0,
        "n_boot": 2000,
    }
    default_seeds = 16

    record_total = True
    validate = staticmethod(validate)
    compute = staticmethod(run_all)
    summarise = staticmethod(summary_of)
    draw = staticmethod(figure)

    def table(self, summary: dict) -> str:
        return "\n".join([sc.slopes_table(summary["slopes"]),
                          f"censored runs: {summary['censored_runs']}/{summary['runs']}"])
