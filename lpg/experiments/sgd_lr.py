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

Acceptance: the slope vs ``ln ε`` in ``[−1.25, −0.75]``; the slopes vs ``ln N`` within
``±0.25`` of theory (``0`` adaptive, ``1`` for ``1/(4N)``); the control is only reported.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker
import numpy as np

import lpg
from lpg import plotting
from lpg.analysis import censored_median, fit_slope, fmt_slope, hitting_time, slope_record
from lpg.features import max_planted_contexts
from lpg.problem import planted_problem
from lpg.spec import Experiment, Int, Ints, Profile, Real, Reals, Sweep, common, divides

RULES = ("adaptive", "constant", "constant_flat")
LABELS = {"adaptive": "adaptive $1/(4+2\\|g_t\\|^2)$", "constant": "constant $1/(4N)$",
          "constant_flat": "constant $1/4$ (control)"}
COLORS = {"adaptive": "#1f5fa8", "constant": "#c0392b", "constant_flat": "#7f8c8d"}
THEORY_N = {"adaptive": 0.0, "constant": 1.0, "constant_flat": None}
ACCEPT_N = {"adaptive": (-0.25, 0.25), "constant": (0.75, 1.25), "constant_flat": None}
ACCEPT_EPS = (-1.25, -0.75)
UNIT = dict(low=0.0, high=1.0, open_low=True, open_high=True)


def make_run(config: dict, optimizer: str):
    """``run(key, N, flat)``: one SGD run at length ``N`` on a planted task padded to
    ``max(Ns)``, its exact error at the log points; ``flat`` picks ``1/4`` over
    ``1/(4N)`` for the constant step (ignored by the adaptive one)."""
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
        c = lpg.train(alg, problem, hyper, k_run, steps=config["steps"], log_every=config["log_every"],
                      w0=problem.fmap.init_params()).curves
        return {"curves": {"sgd": {"step": c.step, "error": c.test_error}}}

    return run


def curves_of(table, rule: str):
    """``(step (P,), error (runs, P), N (runs,))`` of one step rule: the ``adaptive``
    sweep, or the ``constant`` sweep's ``flat = 0`` (``1/(4N)``) or ``flat = 1`` runs."""
    rows = table.where(part="adaptive" if rule == "adaptive" else "constant", flat=int(rule == "constant_flat"))
    return rows.by_run("step")[0].astype(np.float64), rows.by_run("error"), rows.per_run("N")


def summary_of(table, config: dict) -> dict:
    Ns = [int(n) for n in config["Ns"]]
    slopes, points = {}, {}
    for rule in RULES:
        step, error, n_run = curves_of(table, rule)
        # T(ε) vs ε at each N.
        hits = [hitting_time(error, step, e, above=False) for e in config["eps_grid"]]
        eps_x = np.concatenate([np.full(T.shape, e) for (T, _), e in zip(hits, config["eps_grid"])])
        T_all, c_all = np.concatenate([T for T, _ in hits]), np.concatenate([c for _, c in hits])
        n_all = np.tile(n_run, len(config["eps_grid"]))
        for N in Ns:
            sel = n_all == N
            fit = fit_slope(eps_x[sel], T_all[sel], c_all[sel])
            slopes[f"{rule}_T_vs_eps_N{N}"] = slope_record(
                fit, -1.0, accept=ACCEPT_EPS, note="d ln T(eps) / d ln eps; -1 means error proportional to 1/T (C1)")
        for which, e in (("star", config["eps_star"]), ("burn", config["eps_burn"])):
            T, c = hitting_time(error, step, e, above=False)
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
        final = error[:, -1].astype(np.float64)
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


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    """Error vs steps for each rule (one band per N, a 1/T guide), then T(ε*) vs N."""
    Ns = [int(n) for n in config["Ns"]]
    n_seeds = int(config.get("seeds", 0))
    fig, ax = plotting.figure(4, width=4.2, height=3.5)
    cmap = matplotlib.colormaps["viridis"]
    for a, rule in zip(ax[:3], RULES):
        step, error, n_run = curves_of(table, rule)
        pos = step > 0
        x = np.log10(step[pos])
        for i, N in enumerate(Ns):
            plotting.seed_band(a, x, np.log10(np.maximum(error[n_run == N][:, pos], 1e-12)), label=f"N={N}",
                               color=cmap(i / max(1, len(Ns) - 1)), alpha=0.15)
        # Theory C/T (slope -1), constant fitted to the smallest N's late half.
        err0 = np.median(error[n_run == Ns[0]][:, pos], axis=0)
        late = x >= x[len(x) // 2]
        c = np.mean(np.log10(np.maximum(err0[late], 1e-12)) + x[late])
        a.plot(x, c - x, color="k", ls=":", lw=1.2, label="theory $\\propto 1/T$")
        a.set(title=LABELS[rule], xlabel="SGD steps $T$ (samples)", ylabel="test error $err(w_T)$",
              ylim=(math.log10(max(1e-4, float(np.nanmin(err0)) / 3)), 0.15))
        plotting.log10_axis(a, "x")
        plotting.log10_axis(a, "y")
    ax[0].legend(fontsize=6, loc="lower left", ncol=2)
    eps_star = config["eps_star"]
    for rule in RULES:
        step, error, n_run = curves_of(table, rule)
        T, c = hitting_time(error, step, eps_star, above=False)
        xs, med = plotting.scaling_series(ax[3], n_run.astype(np.float64), np.log10(T), c, label=LABELS[rule],
                                          color=COLORS[rule], jitter=0.03)
        if THEORY_N[rule] is not None:
            plotting.theory_overlay(ax[3], xs, med, THEORY_N[rule], color=COLORS[rule],
                                    label=f"theory slope {THEORY_N[rule]:g}, fitted constant")
    ax[3].axhline(math.log10(config["steps"]), color="0.5", lw=0.8, ls="-.", label="budget (censored at it)")
    ax[3].set(title=f"steps to error $\\leq {eps_star:g}$", xlabel="response length $N$", ylabel="$T(\\varepsilon^*)$")
    ax[3].set_xscale("log")
    plotting.log10_axis(ax[3], "y")
    ax[3].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax[3].set_xticks(Ns)
    ax[3].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    handles, _ = ax[3].get_legend_handles_labels()
    handles.append(plotting.censored_legend_handle())
    ax[3].legend(handles=handles, fontsize=6, loc="upper left", frameon=False)
    title = (f"{name}: supervised SGD, adaptive vs constant step as N grows (C1); planted k={config['k']}, "
             f"$\\gamma$={config['gamma']:g}, S={summary['n_contexts']}; {plotting.band_note(n_seeds)}")
    return plotting.save(fig, out_dir, name, title)


def text(summary: dict) -> str:
    """One row per step rule: the slopes vs ε (smallest and largest N) and vs N."""
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
                 f"N={Ns[-1]} {yn('adaptive_error_like_1_over_T_at_largest_N')} "
                 f"final error flat in N: adaptive {yn('adaptive_final_error_flat_in_N')}; "
                 f"grows ~N: constant 1/(4N) {yn('constant_final_error_grows_like_N')}")
    return "\n".join(lines)


class SgdLr(Experiment):
    name = "sgd-lr"
    description = "C1: SGD error ~ 1/(gamma^2 T) with the adaptive step at every N; a constant step pays ~N"
    claims = ("C1",)
    settings = {
        **common(k=4, gamma=0.2, chunk_size=0),
        "Ns": Ints([1, 2, 4, 8, 16, 32, 64], "response lengths (all padded to the largest)", low=1, min_len=2,
                   distinct=True),
        "steps": Int(32768, "SGD steps T (one labelled sample each)", low=1),
        "log_every": Int(32, "steps between log points (exact error)", low=1),
        "eps_grid": Reals([0.1, 0.05, 0.02, 0.01, 0.005], "errors of the T(eps) vs eps fits", min_len=2, **UNIT),
        "eps_star": Real(0.02, "error eps* of the T(eps*) vs N fit", **UNIT),
        "eps_burn": Real(0.5, "large error of the burn-in fit (no claim)", **UNIT),
    }
    constraints = (divides("log_every", "steps"),)
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {"gamma": 0.1, "Ns": [1, 2, 4, 8, 16, 32, 64, 128], "steps": 1048576, "log_every": 512,
                            "eps_grid": [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001], "eps_star": 0.005},
                       "S = 133 contexts, N to 128 and a million samples, so the constant step's censored points "
                       "at large N resolve"),
        "quick": Profile(2, {}),
    }

    def sweeps(self, config):
        """The adaptive step at every N, then the constant step at every N (flat 0: 1/(4N), flat 1: 1/4)."""
        Ns = [int(n) for n in config["Ns"]]
        yield Sweep("adaptive", make_run(config, "adaptive"), {"N": Ns, "flat": [0]})
        yield Sweep("constant", make_run(config, "constant"), {"flat": [0, 1], "N": Ns})

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary):
        return text(summary) + "\n" + self.timing_line(summary)
