"""``sgd-lr``: supervised SGD with the paper's adaptive step against a constant step, as
the response length N grows (claim C1, PAPER.md §4).

C1: SGD on labelled pairs ``(x, y*(x))`` with ``η_t = 1/(4 + 2‖g_t‖²)`` reaches error
``Õ(1/(γ²T))`` after ``T`` samples, with no dependence on ``N``; a constant step costs a
factor ``N``: ``Õ(N/(γ²T))``.

Setting. The planted-margin family (:class:`lpg.PlantedTask`): its margin is exactly
``γ`` at *every* ``N``, so N can change without the margin changing with it (on the
paper's teacher the margin itself moves with N). All ``N`` of a sweep share one compiled
program through the padded, masked path (``Problem.length``). The error is exact (mean
over all ``S`` equally likely contexts), logged every ``log_every`` steps; one labelled
sample per step (batch 1), so ``T`` counts samples.

Step rules (all plain SGD on ``log p_w(y*|x)``, zero initial weights):

* ``adaptive``: ``η_t = 1/(4 + 2‖g_t‖²)`` (lr 1, :func:`lpg.adaptive_step`);
* ``constant``: ``η = 1/(4N)``. Why this step, and why it is fair: ``log p_w(y*|x)`` is
  a sum of ``N`` log-softmax terms, each 1-smooth in ``w`` when ``‖φ‖ ≤ 1``, so it is
  ``N``-smooth and ``1/(4N)`` is the constant step that the worst-case (descent-lemma)
  analysis can guarantee at length ``N``. At ``N = 1`` it coincides with the adaptive
  step's ceiling ``1/4`` (the value the adaptive step tends to as ``g_t → 0``), so the
  two rules start from the same footing and differ only in how they treat ``N``;
* ``constant_flat`` (a control, no claim): ``η = 1/4`` at every ``N``. On this family
  contexts never share weights and every update moves the updated context towards
  ``y*`` for any step size, so a large constant step cannot overshoot; the control
  shows how much of the constant step's factor ``N`` is the worst-case stability
  requirement rather than something every instance charges.

Measured quantity: the hitting time ``T(ε)``, the first logged step with error ``≤ ε``
(censored when it never gets there within ``steps``). Error ``∝ 1/T`` is the same
statement as ``T(ε) ∝ 1/ε``, so the slope of ``ln T(ε)`` against ``ln ε`` (theory
``−1``) is the exponent of error vs ``T``; the slope of ``ln T(ε*)`` against ``ln N`` at
a fixed small ``ε*`` is the N-dependence (theory ``0`` adaptive, ``1`` constant); so is
the slope of the final error ``err(w_T)`` against ``ln N`` at the largest ``T``. The
slope at a large ``ε_burn`` measures the adaptive step's burn-in (the steps before the
error leaves ≈ 1), which C1 does not speak to.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import matplotlib
import matplotlib.ticker
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import _checks, plotting
from lpg.analysis import censored_median, fit_slope, hitting_time
from lpg.experiments import Experiment, register
from lpg.experiments._scaling import (
    censored_legend_handle,
    fmt_slope,
    planted_problem,
    scaling_series,
    slope_record,
    theory_overlay,
)
from lpg.features import max_planted_contexts
from matplotlib.ticker import FuncFormatter

RULES = ("adaptive", "constant", "constant_flat")
LABELS = {"adaptive": "adaptive $1/(4+2\\|g_t\\|^2)$", "constant": "constant $1/(4N)$",
          "constant_flat": "constant $1/4$ (control)"}
COLORS = {"adaptive": "#1f5fa8", "constant": "#c0392b", "constant_flat": "#7f8c8d"}
THEORY_N = {"adaptive": 0.0, "constant": 1.0, "constant_flat": None}
ACCEPT_N = {"adaptive": (-0.25, 0.25), "constant": (0.75, 1.25), "constant_flat": None}
ACCEPT_EPS = (-1.25, -0.75)

DEFAULTS: dict[str, Any] = {
    "k": 4,
    "gamma": 0.2,
    "Ns": [1, 2, 4, 8, 16, 32, 64],
    "steps": 32768,
    "log_every": 32,
    "eps_grid": [0.1, 0.05, 0.02, 0.01, 0.005],
    "eps_star": 0.02,
    "eps_burn": 0.5,
    "chunk_size": 0,
}
"""CPU default (about 2 minutes on 2 cores with 16 seeds)."""

GPU_SETTINGS: dict[str, Any] = {
    "gamma": 0.1,
    "Ns": [1, 2, 4, 8, 16, 32, 64, 128],
    "steps": 1048576,
    "log_every": 512,
    "eps_grid": [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001],
    "eps_star": 0.005,
}
"""Overrides for a GPU (``--set`` each, ``--seeds 64``): S = 133 contexts, N to 128 and
a million samples, so the constant step's censored points at large N resolve."""


def validate(config: dict) -> None:
    _checks.int_at_least("k", config["k"], 2)
    _checks.in_open_closed("gamma", config["gamma"], 0.0, 1.0)
    if max_planted_contexts(config["k"], config["gamma"]) < 1:
        raise ValueError(f"gamma must allow at least one planted context for k={config['k']}, got {config['gamma']}")
    Ns = config["Ns"]
    if len(Ns) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in Ns) or len(set(Ns)) != len(Ns):
        raise ValueError(f"Ns must be at least two distinct integers >= 1, got {Ns!r}")
    _checks.int_at_least("steps", config["steps"], 1)
    _checks.int_at_least("log_every", config["log_every"], 1)
    if config["steps"] % config["log_every"]:
        raise ValueError(f"log_every must divide steps={config['steps']}, got {config['log_every']}")
    eps_grid = config["eps_grid"]
    if len(eps_grid) < 2 or any(not (0.0 < float(e) < 1.0) for e in eps_grid):
        raise ValueError(f"eps_grid must hold at least two values in (0, 1), got {eps_grid!r}")
    for name in ("eps_star", "eps_burn"):
        _checks.in_open(name, config[name], 0.0, 1.0)
    _checks.int_at_least("chunk_size", config["chunk_size"], 0)


def make_run(config: dict, optimizer: str):
    """``run(key, N, flat) -> {"error": (P+1,)}``: one SGD run at length ``N`` on a
    planted task padded to ``max(Ns)``; ``flat`` picks ``1/4`` over ``1/(4N)`` for the
    constant step (ignored by the adaptive one)."""
    n_max = max(config["Ns"])
    alg = lpg.SGD(batch_size=1, optimizer=optimizer)

    def run(key, N, flat):
        k_task, k_run = jax.random.split(key)
        task = lpg.make_planted(k_task, k=config["k"], N=n_max, gamma=config["gamma"])
        problem = planted_problem(task, key=k_task, length=N)
        if optimizer == "adaptive":
            lr = jnp.float32(1.0)
        else:
            lr = jnp.where(flat > 0, 0.25, 0.25 / N).astype(jnp.float32)
        hyper = lpg.Hyper(lr, jnp.float32(jnp.inf), jnp.float32(jnp.inf))
        r = lpg.train(alg, problem, hyper, k_run, steps=config["steps"], log_every=config["log_every"],
                      w0=problem.fmap.init_params())
        return {"error": r.curves.test_error}

    return run


def hitting_times(arrays: dict, rule: str, eps: float):
    """``(T, censored)`` per run of ``rule`` for error ``≤ eps``."""
    step = arrays["step"].astype(np.float64)
    return hitting_time(arrays[f"{rule}_error"], step, eps, above=False)


def summary_of(arrays: dict, config: dict) -> dict:
    Ns = [int(n) for n in config["Ns"]]
    slopes, points = {}, {}
    for rule in RULES:
        n_run = arrays[f"{rule}_N"]
        # T(ε) vs ε at each N.
        eps_x, T_all, c_all, g_all = [], [], [], []
        for e in config["eps_grid"]:
            T, c = hitting_times(arrays, rule, e)
            eps_x.append(np.full(T.shape, e))
            T_all.append(T)
            c_all.append(c)
            g_all.append(np.full(T.shape, e))
        eps_x, T_all, c_all = np.concatenate(eps_x), np.concatenate(T_all), np.concatenate(c_all)
        n_all = np.tile(n_run, len(config["eps_grid"]))
        for N in Ns:
            sel = n_all == N
            fit = fit_slope(eps_x[sel], T_all[sel], c_all[sel])
            slopes[f"{rule}_T_vs_eps_N{N}"] = slope_record(
                fit, -1.0, accept=ACCEPT_EPS, note="d ln T(eps) / d ln eps; -1 means error proportional to 1/T (C1)")
        for which, e in (("star", config["eps_star"]), ("burn", config["eps_burn"])):
            T, c = hitting_times(arrays, rule, e)
            fit = fit_slope(n_run.astype(np.float64), T, c)
            theory = THEORY_N[rule] if which == "star" else None
            accept = ACCEPT_N[rule] if which == "star" else None
            note = (f"d ln T(eps*) / d ln N at eps* = {e:g}" if which == "star"
                    else f"d ln T(eps_burn) / d ln N at eps_burn = {e:g}: the burn-in, no claim")
            if rule == "constant_flat":
                note += "; control, no claim"
            slopes[f"{rule}_T_vs_N_{which}"] = slope_record(fit, theory, accept=accept, note=note)
            points[f"{rule}_{which}"] = {
                "N": Ns,
                "median_T": [censored_median(T[n_run == N], c[n_run == N]) for N in Ns],
                "censored_fraction": [float(c[n_run == N].mean()) for N in Ns],
            }
        final = arrays[f"{rule}_error"][:, -1].astype(np.float64)
        fit = fit_slope(n_run.astype(np.float64), final, np.zeros(final.shape, bool))
        slopes[f"{rule}_final_error_vs_N"] = slope_record(
            fit, THEORY_N[rule], accept=ACCEPT_N[rule],
            note=f"d ln err(w_T) / d ln N at T = steps = {config['steps']}"
            + ("; control, no claim" if rule == "constant_flat" else " (C1)"))
        points[f"{rule}_final_error"] = {"N": Ns, "median": [float(np.median(final[n_run == N])) for N in Ns]}
    ok = lambda key: slopes[key]["verdict"] == "confirmed"  # noqa: E731
    return {
        "experiment": "sgd-lr",
        "claims": ["C1"],
        "n_contexts": max_planted_contexts(config["k"], config["gamma"]),
        "slopes": slopes,
        "points": points,
        "verdict": {
            "adaptive_error_like_1_over_T_at_smallest_N": ok(f"adaptive_T_vs_eps_N{Ns[0]}"),
            "adaptive_error_like_1_over_T_at_largest_N": ok(f"adaptive_T_vs_eps_N{Ns[-1]}"),
            "adaptive_final_error_flat_in_N": ok("adaptive_final_error_vs_N"),
            "constant_final_error_grows_like_N": ok("constant_final_error_vs_N"),
        },
        "units": {
            "T": "SGD steps (= labelled samples, batch 1) until the exact error err(w) <= eps; Kaplan-Meier "
                 "medians over seeds, censored runs counted as >= steps",
        },
    }


def figure(arrays: dict, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    Ns = [int(n) for n in config["Ns"]]
    step = arrays["step"].astype(np.float64)
    n_seeds = int(config.get("seeds", 0))
    fig, ax = plotting.figure(4, width=4.2, height=3.5)
    cmap = matplotlib.colormaps["viridis"]
    pos = step > 0
    x = np.log10(step[pos])
    for a, rule in zip(ax[:3], RULES):
        n_run = arrays[f"{rule}_N"]
        for i, N in enumerate(Ns):
            err = arrays[f"{rule}_error"][n_run == N][:, pos]
            plotting.seed_band(a, x, np.log10(np.maximum(err, 1e-12)), label=f"N={N}",
                               color=cmap(i / max(1, len(Ns) - 1)), alpha=0.15)
        # Theory C/T (slope -1), constant fitted to the smallest N's late half.
        err0 = np.median(arrays[f"{rule}_error"][n_run == Ns[0]][:, pos], axis=0)
        late = x >= x[len(x) // 2]
        c = np.mean(np.log10(np.maximum(err0[late], 1e-12)) + x[late])
        a.plot(x, c - x, color="k", ls=":", lw=1.2, label="theory $\\propto 1/T$")
        a.set(title=LABELS[rule], xlabel="SGD steps $T$ (samples)", ylabel="test error $err(w_T)$",
              ylim=(math.log10(max(1e-4, float(np.nanmin(err0)) / 3)), 0.15))
        plotting.log10_axis(a, "x")
        plotting.log10_axis(a, "y")
    ax[0].legend(fontsize=6, loc="lower left", ncol=2)
    # Hitting time at eps* vs N.
    eps_star = config["eps_star"]
    for rule in RULES:
        T, c = hitting_times(arrays, rule, eps_star)
        n_run = arrays[f"{rule}_N"].astype(np.float64)
        xs, med = scaling_series(ax[3], n_run, np.log10(T), c, label=LABELS[rule], color=COLORS[rule], jitter=0.03)
        if THEORY_N[rule] is not None:
            theory_overlay(ax[3], xs, med, THEORY_N[rule], color=COLORS[rule],
                           label=f"theory slope {THEORY_N[rule]:g}, fitted constant")
    ax[3].axhline(math.log10(config["steps"]), color="0.5", lw=0.8, ls="-.", label="budget (censored at it)")
    ax[3].set(title=f"steps to error $\\leq {eps_star:g}$", xlabel="response length $N$", ylabel="$T(\\varepsilon^*)$")
    ax[3].set_xscale("log")
    plotting.log10_axis(ax[3], "y")
    ax[3].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax[3].set_xticks(Ns)
    ax[3].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    handles, _ = ax[3].get_legend_handles_labels()
    handles.append(censored_legend_handle())
    ax[3].legend(handles=handles, fontsize=6, loc="upper left", frameon=False)
    fig.suptitle(f"{name}: supervised SGD, adaptive vs constant step as N grows (C1); planted k={config['k']}, "
                 f"$\\gamma$={config['gamma']:g}, S={summary['n_contexts']}; {plotting.band_note(n_seeds)}",
                 fontsize=9)
    fig.tight_layout()
    return plotting.save(fig, out_dir, name)


def table(summary: dict, config: dict | None = None) -> str:
    s = summary["slopes"]
    Ns = summary["points"]["adaptive_star"]["N"]
    rows = [("step rule", f"T vs eps (N={Ns[0]})", f"T vs eps (N={Ns[-1]})", "final err vs N", "T(eps*) vs N",
             "theory", "burn-in vs N")]
    for rule in RULES:
        th = THEORY_N[rule]
        rows.append((rule, fmt_slope(s[f"{rule}_T_vs_eps_N{Ns[0]}"]), fmt_slope(s[f"{rule}_T_vs_eps_N{Ns[-1]}"]),
                     fmt_slope(s[f"{rule}_final_error_vs_N"]), fmt_slope(s[f"{rule}_T_vs_N_star"]),
                     "-1 / " + ("-" if th is None else f"{th:g}"), fmt_slope(s[f"{rule}_T_vs_N_burn"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    v = summary["verdict"]
    lines.append("slopes of ln T(eps) (steps to error <= eps) with bootstrap 95% intervals; theory: vs eps / vs N")
    yn = lambda key: "yes" if v[key] else "NO"  # noqa: E731
    lines.append(f"adaptive error ~ 1/T: N={Ns[0]} {yn('adaptive_error_like_1_over_T_at_smallest_N')}, "
                 f"N={Ns[-1]} {yn('adaptive_error_like_1_over_T_at_largest_N')} (burn-in grows with N); "
                 f"final error flat in N: adaptive {yn('adaptive_final_error_flat_in_N')}; "
                 f"grows ~N: constant 1/(4N) {yn('constant_final_error_grows_like_N')}")
    return "\n".join(lines)


@register
class SgdLr(Experiment):
    name = "sgd-lr"
    description = "C1: SGD error ~ 1/(gamma^2 T) with the adaptive step at every N; a constant step pays ~N"
    defaults = DEFAULTS
    default_seeds = 16

    validate = staticmethod(validate)

    def compute(self, config: dict, *, seeds: int, out_dir: Path, resume: bool) -> tuple[dict, dict]:
        arrays, timing = {}, {}
        Ns = [int(n) for n in config["Ns"]]
        plan = {"adaptive": ("adaptive", {"N": Ns, "flat": [0]}),
                "constant": ("constant", {"flat": [0, 1], "N": Ns})}
        for tag, (opt, grid) in plan.items():
            result = self.sweep_part(make_run(config, opt), grid, config, seeds=seeds, out_dir=out_dir,
                                     resume=resume, part=tag, optimizer=opt)
            flat = result.settings["flat"].astype(bool)
            for rule, sel in ((("adaptive", np.ones_like(flat)),) if tag == "adaptive"
                              else (("constant", ~flat), ("constant_flat", flat))):
                arrays[f"{rule}_error"] = result.outputs["error"][sel]
                arrays[f"{rule}_N"] = result.settings["N"][sel]
                arrays[f"{rule}_seed"] = result.seed[sel]
            timing[tag] = result.timing
        arrays["step"] = np.arange(0, config["steps"] + 1, config["log_every"], dtype=np.int64)
        return arrays, timing

    summarise = staticmethod(summary_of)

    def draw(self, arrays: dict, config: dict, summary: dict, out_dir: Path) -> list[Path]:
        return figure(arrays, config, summary, out_dir, self.name)

    def table(self, summary: dict) -> str:
        return table(summary) + "\n" + self.compute_line(summary)
