"""``online``: mistakes of online policy gradient with uniform exploration as N and γ
change, on three context sequences and under both readings of the adaptive step
(claim C7, PAPER.md §4).

C7: online PG with the adaptive step and a uniform behaviour policy, on an arbitrary
(possibly adversarial) context sequence, makes ``Õ(k^N/γ²)`` mistakes, and every
method that explores uniformly needs ``Ω(k^N/(Nγ²))``. Mistakes are
``Σ_t (1 − p_{w_t}(y*_t|x_t))`` (:class:`lpg.OnlinePG`, reconstructed in PAPER.md §3).

Setting. The planted-margin family (margin exactly ``γ`` at every ``N``,
``S = ⌊k/((k−1)γ²)⌋`` contexts), exact event path: each round one uniform response is
verified, and it is correct with probability exactly ``k^-N``. Context sequences
(``orders``, ``OnlinePG(contexts=...)``): ``iid`` (uniform over the ``S`` contexts),
``cyclic`` (``1, 2, …, S, 1, …``) and ``adversarial`` (each round the context with the
lowest current ``p_w(y*|x)``, i.e. the largest mistake of the round: a greedy adversary,
cheap to compute and as bad a sequence as any for the mistake of each round). Step
readings (``step_units``): ``response`` (one adaptive step on the whole response's
gradient, PAPER.md §3, the default) and ``token`` (one adaptive step per token, in
order). Starts (``starts``): ``alpha``, the main test, a planted base with likelihood
``α`` on every context at every ``N`` (:func:`lpg.tasks.planted_alpha_base`), so the
warm-up ``≈ 2·ln(1/p_w0(y*|x))`` adaptive steps per context (PAPER.md §3) does not grow
with ``N``; ``uniform``, zero weights, whose warm-up ``2·N·ln k`` is a log factor of
``k^N`` that ``Õ`` hides (reported with the same test).

Measured quantity. The learner keeps making mistakes at a slowly falling rate for ever
(after ``n`` updates a context's error is ``≈ 1/n``), so the total over an infinite
horizon grows like ``log T``; we measure the mistakes made *until the learner is good*:
``M_ε`` = cumulative mistakes at the first check (every ``check_every`` rounds) where
the exact error (mean over the ``S`` contexts) is ``≤ ε`` (:func:`lpg.hitting.run_until`).
Runs not there within ``2^⌈log2(budget_factor·S·k^N_max)⌉`` rounds are censored (kept;
Kaplan–Meier medians). One compiled program per (margin, reading, order) runs every
``N`` (padded to the largest, with a length mask) and both starts.

Acceptance (stated before the data; both bounds read as ``M = k^N·f(N)/γ²``):

* **Rate in N** (one record per reading, order and start): the slope ``r`` of
  ``ln M_ε`` against ``N`` (least squares on the medians, bootstrap CI). The upper
  bound's ``Õ`` hides a log factor of ``k^N/γ²``; at a fixed margin that is
  ``f(N) = a + b·N`` (``b``: the warm-up ``N·ln k``), which adds to the slope the
  least-squares slope of ``ln(a + b·N)``; that is a positive average of
  ``d ln(a + bN)/dN = b/(a + bN) ≤ 1/N``, so it lies in ``[0, s_N]`` with ``s_N`` the
  slope of ``ln N`` against ``N`` over the ``Ns`` grid (``b/a → ∞``). The lower bound's
  ``1/N`` takes ``s_N`` off. Confirmed when ``r ∈ [ln k − s_N, ln k + s_N]``: for
  ``k = 2``, ``Ns = 1, 2, 4, 6, 8``, ``s_N = 0.284`` and the band is ``[0.409, 0.977]``
  (base ``e^r ∈ [1.51, 2.66]``). It fails on another base (``3^N``, ``√2^N``) or on a
  second factor of ``N`` (``k^N·N²`` has ``r = ln k + 2·s_N``). The lower edge reads
  the lower bound's ``1/N`` as a shape over the grid, which is stricter than the bound
  (a statement about levels, ``M ≥ c·k^N/(Nγ²)``): a warm-up that shrinks with ``N``
  (from the ``α`` start the per-token reading spreads ``ln(1/α)`` over ``N`` token
  steps per update) lowers ``r`` at the smallest ``N`` without contradicting C7, so a
  record that fails only on that side says so in the text.
* **Rate in γ** (per reading and start, i.i.d. order, ``N = gamma_N``): the slope of
  ``ln M_ε`` against ``ln γ`` over ``gammas[0]`` and ``gamma_extra``, theory ``−2``. One
  log factor ``ln(k^N/γ²)`` steepens it by at most ``s_γ``, the slope of
  ``ln ln(k^N/γ²)`` against ``ln γ`` over that grid; both bounds have the exponent ``−2``,
  so the other side mirrors ``s_γ`` as the tolerance for noise at three margins.
  Confirmed when the slope is in ``[−2 − s_γ, −2 + s_γ]`` (``k = 2``, ``N = 4``,
  ``γ = 0.5, 0.35, 0.25``: ``s_γ = 0.415``, band ``[−2.42, −1.58]``).
* **Readings**: a test that passes under one step reading only is
  ``conditional (on …)`` that reading (:func:`lpg.analysis.mark_conditional`); the
  claim is confirmed when every record passes under both.

Reported beside the verdicts: ``M_ε·γ²/k^N = a + b·N`` fitted to the medians
(:func:`lpg.analysis.affine_fit`), ``b`` against the uniform start's warm-up
``2·S·γ²·ln k`` (its ``N·ln k`` factor: each response-level step lowers a context's loss
by less than ½, and a round costs about one mistake until then), and no growth
(``b ≤ 0``) from the fixed-``α`` start, whose warm-up ``ln(1/α)`` does not grow with ``N``
and is paid faster at larger ``N`` (a step lowers the loss by ``‖g‖²/(4 + 2‖g‖²)``, nearer
½ as ``‖g‖`` grows with ``N``; per token, ``N`` such steps per update).
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
from lpg.algorithms.base import READINGS
from lpg.analysis import affine_fit, censored_median, claim_under_readings, fit_record, mark_conditional, slopes_table
from lpg.features import max_planted_contexts
from lpg.hitting import error_at_most, run_until
from lpg.problem import planted_problem
from lpg.spec import PER_POINT, Choices, Experiment, Int, Ints, Profile, Real, Reals, Sweep, common

GAMMA = dict(low=0.0, high=1.0, open_low=True)
STARTS = ("alpha", "uniform")
ORDERS = ("iid", "cyclic", "adversarial")
STEP_UNITS = tuple(READINGS)  # the paper's reading first (lpg.OnlinePG's step_unit)


def budget(config: dict, N: int, gamma: float) -> int:
    """Rounds a run may take: a power of two ``≥ budget_factor·S·k^N`` (and ``≥ check_every``)."""
    want = config["budget_factor"] * max_planted_contexts(config["k"], gamma) * float(config["k"]) ** N
    return max(int(config["check_every"]), 2 ** int(math.ceil(math.log2(want))))


def grids(config: dict) -> list[tuple[str, str, float, list[int]]]:
    """Every compiled program: ``(step unit, order, γ, Ns)`` — the N sweeps at each of
    ``gammas``, and the margin fit's extra margins (i.i.d. order) at ``N = gamma_N``."""
    out = [(u, o, float(g), list(config["Ns"])) for g in config["gammas"] for u in config["step_units"]
           for o in config["orders"]]
    return out + [(u, "iid", float(g), [int(config["gamma_N"])]) for g in config["gamma_extra"]
                  for u in config["step_units"]]


def part_name(unit: str, order: str, gamma: float) -> str:
    return f"{unit}_{order}_gamma{gamma:g}"


def make_run(config: dict, unit: str, order: str, gamma: float, Ns: list[int]):
    """``run(key, N, start)``: one online run (``start`` 0: planted ``α`` base, 1: uniform)
    until the exact error is ``≤ eps``; its mistakes, rounds and whether it got there."""
    pad, k = max(Ns), config["k"]
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=pad, gamma=gamma)
    alg = lpg.OnlinePG(contexts=order, step_unit=unit)
    target, max_steps = error_at_most(config["eps"]), budget(config, pad, gamma)

    def run(key, N, start):
        # likelihood α over the first N positions: α^(pad/N) over the padded task's pad
        w_alpha = lpg.tasks.planted_alpha_base(task, log_alpha=math.log(config["alpha"]) * pad / N)
        w0 = jnp.where(start == 1, jnp.zeros_like(w_alpha), w_alpha)
        problem = planted_problem(task, key=jax.random.PRNGKey(0), base=w0, length=N)
        hit = run_until(alg, problem, lpg.hyper(), key, max_steps=max_steps, target=target,
                        check_every=config["check_every"])
        return {"hit": hit.hit, "rounds": hit.steps, "mistakes": hit.aux["mistakes"]}

    return run


# ---------------------------------------------------------------------------------
# Acceptance bands (from the grids, before the data)
# ---------------------------------------------------------------------------------


def ls_slope(x, y) -> float:
    """Least-squares slope of ``y`` on ``x``."""
    return float(np.polyfit(np.asarray(x, np.float64), np.asarray(y, np.float64), 1)[0])


def n_band(k: int, Ns) -> tuple[float, float]:
    """C7's band for ``d ln M/dN``: ``ln k ± s_N``, ``s_N`` the slope of ``ln N`` over ``Ns``."""
    s = ls_slope(Ns, np.log(Ns))
    return math.log(k) - s, math.log(k) + s


def gamma_band(k: int, N: int, gammas) -> tuple[float, float]:
    """C7's band for ``d ln M/d ln γ``: ``−2 ± s_γ``, ``s_γ`` the slope magnitude of
    ``ln ln(k^N/γ²)`` against ``ln γ`` over ``gammas``."""
    g = np.asarray(gammas, np.float64)
    s = abs(ls_slope(np.log(g), np.log(N * math.log(k) - 2 * np.log(g))))
    return -2.0 - s, -2.0 + s


def gamma_grid(config: dict) -> list[float]:
    return [float(config["gammas"][0])] + [float(g) for g in config["gamma_extra"]]


# ---------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------


def per_run(table, unit: str, order: str, gamma: float, start: str) -> dict:
    """Per-run ``N``, ``M`` (mistakes at the hit, or at the budget) and ``censored`` of one configuration."""
    rows = table.where(part=part_name(unit, order, gamma), start=STARTS.index(start))
    return {"N": rows["N"].astype(np.float64), "M": rows["mistakes"].astype(np.float64),
            "censored": ~rows["hit"].astype(bool), "rounds": rows["rounds"].astype(np.float64)}


def configs(config: dict):
    """Every ``(unit, order, γ, start)`` of the N sweeps."""
    return [(u, o, float(g), s) for g in config["gammas"] for u in config["step_units"] for o in config["orders"]
            for s in config["starts"]]


def summary_of(table, config: dict) -> dict:
    k, n_boot = config["k"], config["n_boot"]
    lo_N, hi_N = n_band(k, config["Ns"])
    slopes, normalised, affine = {}, {}, {}
    for unit, order, g, start in configs(config):
        r = per_run(table, unit, order, g, start)
        name = f"{unit}_{order}_{start}_gamma{g:g}"
        slopes[f"rate_{name}"] = fit_record(
            r["N"], r["M"], r["censored"], theory=math.log(k), accept=(lo_N, hi_N), log_x=False, n_boot=n_boot,
            claim="C7", note=f"d ln(M_eps)/dN, {READINGS[unit]}, {order} contexts, {start} start; theory ln k, "
                             f"band ln k -/+ s_N (one log factor a + bN; the lower bound's 1/N)")
        norm = r["M"] * g**2 / float(k) ** r["N"]
        Ns = sorted(set(int(n) for n in r["N"]))
        normalised[name] = {"N": Ns, "median": [censored_median(norm[r["N"] == n], r["censored"][r["N"] == n])
                                                for n in Ns],
                            "censored": [int(r["censored"][r["N"] == n].sum()) for n in Ns]}
        fit = affine_fit(r["N"], norm, r["censored"], n_boot=n_boot)
        S = max_planted_contexts(k, g)
        affine[name] = {"a": fit["intercept"], "a_ci": fit["intercept_ci"], "b": fit["per_x"], "b_ci": fit["per_x_ci"],
                        "b_warmup": 2 * S * g**2 * math.log(k) if start == "uniform" else 0.0}
    lo_g, hi_g = gamma_band(k, config["gamma_N"], gamma_grid(config)) if config["gamma_extra"] else (math.nan,) * 2
    if config["gamma_extra"]:
        for unit in config["step_units"]:
            for start in config["starts"]:
                runs = [per_run(table, unit, "iid", g, start) for g in gamma_grid(config)]
                sel = [r["N"] == config["gamma_N"] for r in runs]
                gam = np.concatenate([np.full(int(s.sum()), g) for s, g in zip(sel, gamma_grid(config))])
                slopes[f"gamma_{unit}_iid_{start}_N{config['gamma_N']}"] = fit_record(
                    gam, np.concatenate([r["M"][s] for r, s in zip(runs, sel)]),
                    np.concatenate([r["censored"][s] for r, s in zip(runs, sel)]), theory=-2.0,
                    accept=(lo_g, hi_g), n_boot=n_boot, claim="C7",
                    note=f"d ln(M_eps)/d ln gamma at N = {config['gamma_N']}, {READINGS[unit]}, iid contexts, "
                         f"{start} start; theory -2, band -2 -/+ s_gamma (one log factor ln(k^N/gamma^2))")
    for name in [n for n in slopes if n.startswith(("rate_response_", "gamma_response_"))]:
        twin = name.replace("_response_", "_token_", 1)
        if twin in slopes:
            mark_conditional({READINGS["response"]: slopes[name], READINGS["token"]: slopes[twin]})
    by_reading = {READINGS[u]: [rec for n, rec in slopes.items() if n.split("_")[1] == u] for u in config["step_units"]}
    return {
        "experiment": "online",
        "claims": ["C7"],
        "slopes": slopes,
        "bands": {"rate_N": [lo_N, hi_N], "s_N": hi_N - math.log(k), "rate_gamma": [lo_g, hi_g],
                  "s_gamma": hi_g + 2.0},
        "normalised": normalised,
        "affine": affine,
        "budgets": {part_name(u, o, g): budget(config, max(Ns), g) for u, o, g, Ns in grids(config)},
        "verdict": claim_under_readings("C7", by_reading),
        "units": {"M": f"mistakes sum_t (1 - p(y*_t|x_t)) until the exact error is <= eps = {config['eps']:g}; "
                       "Kaplan-Meier medians over seeds, censored runs counted as >= their mistakes at the budget"},
    }


# ---------------------------------------------------------------------------------
# Figure and text
# ---------------------------------------------------------------------------------

ORDER_COLOR = {"iid": "#1f5fa8", "cyclic": "#2a9d55", "adversarial": "#c0392b"}
START_STYLE = {"alpha": dict(ls="-", marker="o"), "uniform": dict(ls="--", marker="s")}


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    k, n_seeds = config["k"], int(config.get("seeds", 0))
    units = list(config["step_units"])
    fig, ax = plotting.figure(len(units) + 2, width=4.0, height=3.4)
    g0 = float(config["gammas"][0])
    for a, unit in zip(ax, units):
        for u, order, g, start in configs(config):
            if u != unit or g != g0:
                continue
            r = per_run(table, unit, order, g, start)
            norm = np.log10(r["M"]) + 2 * math.log10(g) - r["N"] * math.log10(k)
            plotting.scaling_series(a, r["N"], norm, r["censored"], label=f"{order}, {start} start",
                                    color=ORDER_COLOR[order], jitter=0.08, log_x=False, **START_STYLE[start])
        a.set(title=f"{READINGS[unit]}, $\\gamma$={g0:g}", xlabel="response length $N$",
              ylabel="$M_\\varepsilon\\gamma^2/k^N$")
    a = ax[len(units)]
    for unit in units:
        key = f"gamma_{unit}_iid_alpha_N{config['gamma_N']}"
        if key not in summary["slopes"]:
            continue
        runs = [per_run(table, unit, "iid", g, "alpha") for g in gamma_grid(config)]
        sel = [r["N"] == config["gamma_N"] for r in runs]
        gam = np.concatenate([np.full(int(s.sum()), g) for s, g in zip(sel, gamma_grid(config))])
        M = np.concatenate([r["M"][s] for r, s in zip(runs, sel)])
        cens = np.concatenate([r["censored"][s] for r, s in zip(runs, sel)])
        gx, med = plotting.scaling_series(a, gam, np.log10(M), cens, label=READINGS[unit], jitter=0.01,
                                          color="#1f5fa8" if unit == "response" else "#e08a3c")
        plotting.theory_overlay(a, gx, med, -2.0, color="k",
                                label="$\\propto\\gamma^{-2}$" if unit == units[0] else None)
    a.set(title=f"margin, N={config['gamma_N']}, iid, $\\alpha$ start", xlabel="margin $\\gamma$",
          ylabel="mistakes $M_\\varepsilon$")
    a.set_xscale("log")
    a.set_xticks(gamma_grid(config))
    a.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    a.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    a = ax[len(units) + 1]
    lo, hi = summary["bands"]["rate_N"]
    a.axhspan(lo, hi, color="#999999", alpha=0.25, lw=0, label="acceptance band")
    a.axhline(math.log(k), color="k", lw=0.8, ls=":", label="ln k")
    rates = [(n, rec) for n, rec in summary["slopes"].items() if n.startswith("rate_")]
    for i, (n, rec) in enumerate(rates):
        unit, order, start = n.split("_")[1:4]
        est, (c_lo, c_hi) = rec["estimate"], rec["ci"]
        if est is None or not math.isfinite(est):
            continue
        a.errorbar([i], [est], yerr=[[est - c_lo], [c_hi - est]], color=ORDER_COLOR[order], fmt=START_STYLE[start]
                   ["marker"], mfc="white" if unit == "token" else ORDER_COLOR[order], ms=5, lw=1.0)
    a.set_xticks(range(len(rates)))
    a.set_xticklabels([n[len("rate_"):].rsplit("_gamma", 1)[0].replace("_", " ") for n, _ in rates], rotation=90,
                      fontsize=5)
    a.set(title="fitted d ln M/dN (filled: response, hollow: token)", ylabel="slope")
    for i, a in enumerate(ax):
        if i < len(units) + 1:
            plotting.log10_axis(a, "y")
        handles = a.get_legend_handles_labels()[0] + ([plotting.censored_legend_handle()] if i < len(units) + 1 else [])
        a.legend(handles=handles, fontsize=5.5, frameon=False,
                 **(dict(loc="upper right", ncol=2) if i < len(units) else dict(loc="best")))
        a.grid(alpha=0.25, which="both")
    title = (f"{name}: online PG with uniform exploration (C7); planted k={k}; dots: runs, lines: Kaplan-Meier "
             f"medians over {n_seeds} seeds, hollow markers: censored at the budget")
    return plotting.save(fig, out_dir, name, title)


def _fmt(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _normalised_lines(summary: dict) -> list[str]:
    """``M·γ²/k^N`` medians per N, and ``a + b·N``, of every configuration."""
    lines = ["M_eps gamma^2 / k^N (medians) and its fit a + b N (b_warmup: 2 S gamma^2 ln k, the uniform start's):"]
    for name, p in summary["normalised"].items():
        f = summary["affine"][name]
        meds = ", ".join(f"N={n}: {_fmt(m)}" for n, m in zip(p["N"], p["median"]))
        lines.append(f"  {name}: {meds}; a = {_fmt(f['a'])}, b = {_fmt(f['b'])} [{_fmt(f['b_ci'][0])}, "
                     f"{_fmt(f['b_ci'][1])}] (b_warmup {_fmt(f['b_warmup'])})")
    return lines


def _relations(c: dict):
    """gamma_N among Ns; margins distinct; check_every a power of two below every budget."""
    gammas = list(c["gammas"]) + list(c["gamma_extra"])
    if c["gamma_N"] not in c["Ns"]:
        return f"gamma_N must be one of Ns={c['Ns']}, got {c['gamma_N']}"
    if len(set(gammas)) != len(gammas):
        return f"gammas must be distinct from gamma_extra, got {c['gammas']!r}, {c['gamma_extra']!r}"
    if c["check_every"] & (c["check_every"] - 1):
        return f"check_every must be a power of two (it divides every budget 2^j), got {c['check_every']}"
    return None


class Online(Experiment):
    name = "online"
    description = ("C7: online PG with uniform exploration makes ~k^N/gamma^2 mistakes (lower bound k^N/(N gamma^2)), "
                   "any context order, both step readings")
    claims = ("C7",)
    settings = {
        **common(k=2, chunk_size=0, task_seed=0, n_boot=2000),
        "Ns": Ints([1, 2, 4, 6, 8], "response lengths", low=1, min_len=2, distinct=True, increasing=True),
        "gammas": Reals([0.5], "margins of the N sweeps", **GAMMA, distinct=True),
        "gamma_N": Int(4, "the N (one of Ns) of the margin fit", low=1),
        "gamma_extra": Reals([0.35, 0.25], "margins run only at N = gamma_N (i.i.d. contexts; with gammas[0]: "
                                           "the margin fit)", min_len=0, **GAMMA),
        "alpha": Real(1e-3, "likelihood of y* under the fixed-alpha start, every context and N", **GAMMA,
                      open_high=True),
        "starts": Choices(list(STARTS), "starts: alpha (planted base, the main test) and uniform (zero weights)",
                          STARTS),
        "orders": Choices(list(ORDERS), "context sequences", ORDERS),
        "step_units": Choices(list(STEP_UNITS), "readings of the adaptive step", STEP_UNITS),
        "eps": Real(0.1, "M_eps: mistakes until the exact error is <= eps", **GAMMA, open_high=True),
        "budget_factor": Real(80.0, "budget: 2^ceil(log2(budget_factor S k^N_max)) rounds", low=0.0, open_low=True),
        "check_every": Int(2, "rounds between checks of the error (the resolution of M_eps); a power of two",
                           low=1),
    }
    constraints = (_relations,)
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {"Ns": [1, 2, 4, 6, 8, 10, 12], "gammas": [0.5, 0.35], "gamma_N": 6,
                            "gamma_extra": [0.25, 0.18, 0.125]},
                       "N to 12 (2^12 responses), N sweeps at two margins, margins down to 1/8 (S = 128)"),
        "quick": Profile(2, {"Ns": [1, 2, 4], "gamma_N": 2, "n_boot": 200}),
    }

    def sweeps(self, config):
        """One program per (reading, order, margin): every N and start, one chunk per grid point."""
        for unit, order, g, Ns in grids(config):
            yield Sweep(part_name(unit, order, g), make_run(config, unit, order, g, Ns),
                        grid={"N": Ns, "start": [STARTS.index(s) for s in config["starts"]]},
                        tags={"gamma": g, "order": order, "step_unit": unit}, chunk_size=PER_POINT)

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary):
        v = summary["verdict"]
        checks = "; ".join(f"{key}: {'yes' if ok is True else ('NO' if ok is False else ok)}" for key, ok in v.items())
        b = summary["bands"]
        low = [n for n, rec in summary["slopes"].items() if n.startswith("rate_") and rec["verdict"] == "not confirmed"
               and rec["estimate"] < b["rate_N"][0]]
        below = ([f"below the band (M grows more slowly than k^N/N over the grid, a lower-side failure; see the "
                  f"docstring): {', '.join(low)}"] if low else [])
        return "\n".join([slopes_table(summary["slopes"]), *below,
                          f"bands: d ln M/dN in [{_fmt(b['rate_N'][0])}, {_fmt(b['rate_N'][1])}] (s_N = "
                          f"{_fmt(b['s_N'])}); d ln M/d ln gamma in [{_fmt(b['rate_gamma'][0])}, "
                          f"{_fmt(b['rate_gamma'][1])}] (s_gamma = {_fmt(b['s_gamma'])})",
                          *_normalised_lines(summary), checks,
                          self.timing_line(summary)])
