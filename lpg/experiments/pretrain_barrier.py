"""``pretrain-barrier``: supervised pre-training on too few samples leaves the base
model's Likelihood Quantile at the uniform policy's ``k^-N`` (claim C8, PAPER.md §4).

C8: there are distributions on which pre-training with ``n ≲ 1/(γ²ε)`` samples leaves
``Q_q(ε) ≤ k^-N`` — and then (C4–C6) outcome-reward post-training needs ``≈ k^N``
queries, whatever the pre-training algorithm.

Construction (an instance of the claim, stated here because C8 is existential). The
planted-margin family (margin exactly ``γ``, ``S = ⌊k/((k−1)γ²)⌋`` contexts, one-hot
contexts, so a context's weights move only when that context is sampled) with a
non-uniform context distribution: ``S_r = ⌈S/2⌉`` *rare* contexts of weight 1 and
``S − S_r`` *common* ones of weight ``r = max(1, round(S_r(1 − 2ε)/(2ε(S − S_r))))`` (halves up), so
the rare block carries mass ``ρ ≈ 2ε`` spread over ``≈ S/2 ∝ 1/γ²`` contexts. Weights
are integers, so the distribution is exactly ``M = S_r + r(S − S_r)`` equally likely
atoms and :func:`lpg.metrics.likelihood_quantile` over the ``M`` atoms is the exact LQ.

Pre-training: SGD with the adaptive step (:class:`lpg.SGD`, batch 1, from the uniform
policy), so ``n`` = steps = labelled samples seen; the LQ is read at every log point.
A context never sampled keeps ``q(y*|x) = k^-N`` exactly and a sampled one is strictly
above it, so ``Q_q(ε) ≤ k^-N`` exactly while the never-sampled mass exceeds ``ε``: the
barrier lasts ``n* ≈ M ln(ρ/ε) ∝ 1/(γ²ε)`` samples. Measured: ``n*`` = the first log
point with ``Q_q(ε) > k^-N``; slopes of ``ln n*`` against ``ln ε`` (theory ``−1``) and
``ln γ`` (theory ``−2``), the ε fit over ``ε ≤ eps_fit_max`` (at larger ε the common
contexts' unseen mass and the rounding of ``r`` still matter); and, as an independent check of the mechanism, the median
first time the never-sampled mass drops to ``≤ ε`` in a plain NumPy simulation of
i.i.d. context draws (no training at all), which ``n*`` should match.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker
import numpy as np

import lpg
from lpg import _checks, plotting
from lpg.analysis import censored_median, hitting_time
from lpg.experiments import Experiment, register
from lpg.experiments._scaling import fit_record, planted_problem, scaling_series, slopes_table, theory_overlay
from lpg.features import max_planted_contexts
from matplotlib.ticker import FuncFormatter

LN10 = math.log(10.0)

DEFAULTS: dict[str, Any] = {
    "k": 4,
    "N": 16,
    "gammas": [0.5, 0.35, 0.25, 0.18],
    "epss": [0.2, 0.1, 0.05, 0.025],
    "eps_fit_max": 0.1,
    "horizon_factor": 4.0,
    "log_points": 512,
    "n_coverage_sims": 2000,
    "chunk_size": 0,
}
"""CPU default (under a minute on 2 cores with 16 seeds)."""

GPU_SETTINGS: dict[str, Any] = {
    "N": 64,
    "gammas": [0.5, 0.35, 0.25, 0.18, 0.125, 0.09],
    "epss": [0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625],
    "log_points": 2048,
}
"""Overrides for a GPU (``--set`` each, ``--seeds 128``): margins to 0.09 (S = 164
contexts) and ε to 1/160."""


class RareContextTask(eqx.Module):
    """A planted task whose contexts are drawn with integer weights ``m_c`` (not
    uniformly); everything else is the planted task's."""

    planted: lpg.PlantedTask
    log_weights: jax.Array  # (S,) log m_c

    @property
    def N(self) -> int:
        return self.planted.N

    @property
    def k(self) -> int:
        return self.planted.k

    @property
    def d(self) -> int:
        return self.planted.d

    @property
    def contexts(self) -> jax.Array:
        return self.planted.contexts

    def sample_contexts(self, key, n: int) -> jax.Array:
        idx = jax.random.categorical(key, self.log_weights, shape=(n,))
        return jax.nn.one_hot(idx, self.d)

    def response(self, x) -> jax.Array:
        return self.planted.response(x)

    def feature_map(self):
        return self.planted.feature_map()


def multiplicities(S: int, eps, xp=np):
    """Integer context weights ``m`` (``(S,)``): ``⌈S/2⌉`` rare contexts of weight 1 first,
    the rest of weight ``r`` (module docstring). ``xp`` is ``numpy`` or ``jax.numpy``."""
    s_rare = (S + 1) // 2
    s_common = S - s_rare
    if s_common == 0:
        return xp.ones((S,))
    # Rounded half up with a little slack, so float32 (traced ε) and float64 agree.
    r = xp.maximum(1.0, xp.floor(s_rare * (1.0 - 2.0 * eps) / (2.0 * eps * s_common) + 0.5 + 1e-4))
    return xp.where(xp.arange(S) < s_rare, 1.0, r)


def validate(config: dict) -> None:
    k = _checks.int_at_least("k", config["k"], 2)
    _checks.int_at_least("N", config["N"], 1)
    for name in ("gammas", "epss"):
        vals = config[name]
        if len(vals) < 2 or len(set(vals)) != len(vals):
            raise ValueError(f"{name} must hold at least two distinct values, got {vals!r}")
    for g in config["gammas"]:
        _checks.in_open_closed("gamma", g, 0.0, 1.0)
        if max_planted_contexts(k, g) < 2:
            raise ValueError(f"gamma must allow at least two planted contexts for k={k} (a rare and a common "
                             f"one), got {g}")
    for e in config["epss"]:
        _checks.in_open("eps", e, 0.0, 0.5)
    _checks.in_open("eps_fit_max", config["eps_fit_max"], 0.0, 0.5)
    if sum(e <= config["eps_fit_max"] for e in config["epss"]) < 2:
        raise ValueError(f"eps_fit_max must leave at least two of epss={config['epss']} in the fit, "
                         f"got {config['eps_fit_max']}")
    _checks.positive("horizon_factor", config["horizon_factor"])
    _checks.int_at_least("log_points", config["log_points"], 2)
    _checks.int_at_least("n_coverage_sims", config["n_coverage_sims"], 1)
    _checks.int_at_least("chunk_size", config["chunk_size"], 0)


def n_atoms(S: int, eps: float) -> int:
    return int(round(float(np.sum(multiplicities(S, eps)))))


def horizon(config: dict, gamma: float) -> tuple[int, int]:
    """``(steps, log_every)`` for one γ: ``horizon_factor × M`` at the smallest ε, rounded
    up to a multiple of ``log_points``."""
    S = max_planted_contexts(config["k"], gamma)
    m_max = max(n_atoms(S, e) for e in config["epss"])
    log_every = max(1, int(math.ceil(config["horizon_factor"] * m_max / config["log_points"])))
    return log_every * config["log_points"], log_every


def make_run(config: dict, gamma: float):
    """``run(key, eps) -> {"track_log_lik": (P+1, S), "weights": (S,)}``: SGD pre-training on
    the rare-block distribution of ``eps``; the exact log-likelihood of every context at
    each log point, and the context weights used."""
    steps, log_every = horizon(config, gamma)
    S = max_planted_contexts(config["k"], gamma)
    alg = lpg.SGD(batch_size=1)

    def run(key, eps):
        k_task, k_run = jax.random.split(key)
        planted = lpg.make_planted(k_task, k=config["k"], N=config["N"], gamma=gamma)
        weights = multiplicities(S, eps, jnp)
        task = RareContextTask(planted, jnp.log(weights))
        problem = planted_problem(task, key=k_task)
        c = lpg.train(alg, problem, lpg.hyper(), k_run, steps=steps, log_every=log_every,
                      w0=problem.fmap.init_params()).curves
        return {"track_log_lik": c.track_log_lik, "weights": weights}

    return run


def lq_curve(track_log_lik: np.ndarray, weights: np.ndarray, eps: float) -> np.ndarray:
    """Exact ``log Q_q(ε)`` at every log point of one run: the LQ of the ``M`` equally
    likely atoms (each context repeated by its integer weight)."""
    reps = np.rint(np.asarray(weights)).astype(int)
    atoms = np.repeat(np.asarray(track_log_lik), reps, axis=-1)
    return np.asarray(lpg.likelihood_quantile(jnp.asarray(atoms), eps), np.float64)


def coverage_times(weights: np.ndarray, eps: float, n_sims: int, seed: int = 0) -> np.ndarray:
    """Independent reference: i.i.d. context draws with probabilities ``∝ weights``, no
    training; the first ``n`` after which the never-drawn mass is ``≤ ε`` (``n_sims``
    simulations; ``inf`` if not within ``50·M`` draws)."""
    w = np.asarray(weights, np.float64)
    p = w / w.sum()
    S = p.size
    length = int(50 * w.sum())
    rng = np.random.default_rng(seed)
    out = np.empty(n_sims)
    for i in range(n_sims):
        draws = rng.choice(S, size=length, p=p)
        ctx, first = np.unique(draws, return_index=True)
        order = np.argsort(first)
        seen_mass = np.cumsum(p[ctx[order]])
        done = np.flatnonzero(1.0 - seen_mass <= eps + 1e-12)
        out[i] = first[order][done[0]] + 1 if done.size else np.inf
    return out


def per_run(arrays: dict, config: dict) -> dict:
    """Flat per-run arrays: ``gamma``, ``eps``, ``n_star``, ``censored``, and the LQ curves."""
    k, N = config["k"], config["N"]
    floor = -N * math.log(k)
    out = {"gamma": [], "eps": [], "n_star": [], "censored": [], "log_lq": []}
    for g in config["gammas"]:
        steps, log_every = horizon(config, g)
        n = np.arange(0, steps + 1, log_every, dtype=np.float64)
        tll = arrays[f"gamma{g:g}_track_log_lik"]
        weights = arrays[f"gamma{g:g}_weights"]
        for i, e in enumerate(arrays[f"gamma{g:g}_eps"]):
            e = float(e)
            lq = lq_curve(tll[i], weights[i], e)
            # Above k^-N by more than float32 rounding of a sum of N log-softmax terms.
            t, c = hitting_time(lq, n, floor + 1e-4 * max(1.0, abs(floor)), above=True)
            out["gamma"].append(g)
            out["eps"].append(e)
            out["n_star"].append(float(t[0]))
            out["censored"].append(bool(c[0]))
            out["log_lq"].append(lq)
    res = {key: np.asarray(v) for key, v in out.items() if key != "log_lq"}
    res["log_lq"] = out["log_lq"]
    return res


def _eps_key(e: float) -> float:
    return float(np.round(e, 6))


def summary_of(arrays: dict, config: dict) -> dict:
    k = config["k"]
    r = per_run(arrays, config)
    eps_r = np.round(r["eps"], 6)
    slopes, points = {}, {}
    for g in config["gammas"]:
        sel = r["gamma"] == g
        slopes[f"n_star_vs_eps_gamma{g:g}"] = fit_record(
            eps_r[sel], r["n_star"][sel], r["censored"][sel], theory=-1.0, accept=(-1.25, -0.75),
            regime=[0.0, config["eps_fit_max"]],
            note="d ln n* / d ln eps for eps <= eps_fit_max (C8; larger eps leave the asymptotic regime)")
    for e in config["epss"]:
        sel = eps_r == _eps_key(e)
        slopes[f"n_star_vs_gamma_eps{e:g}"] = fit_record(
            r["gamma"][sel], r["n_star"][sel], r["censored"][sel], theory=-2.0, accept=(-2.5, -1.5),
            note="d ln n* / d ln gamma (C8)")
    rows = []
    for g in config["gammas"]:
        S = max_planted_contexts(k, g)
        run_eps = np.round(arrays[f"gamma{g:g}_eps"].astype(np.float64), 6)
        for e in config["epss"]:
            sel = (r["gamma"] == g) & (eps_r == _eps_key(e))
            med = censored_median(r["n_star"][sel], r["censored"][sel])
            m = np.asarray(arrays[f"gamma{g:g}_weights"][np.flatnonzero(run_eps == _eps_key(e))[0]], np.float64)
            _, log_every = horizon(config, g)
            # On the log-point grid, like the measured n*.
            cov = np.ceil(coverage_times(m, e, config["n_coverage_sims"], seed=17) / log_every) * log_every
            n_run = r["n_star"][sel]
            se = math.sqrt(np.var(n_run, ddof=1) / n_run.size + np.var(cov, ddof=1) / cov.size)
            z = (float(np.mean(n_run)) - float(np.mean(cov))) / se if se > 0 else 0.0
            rows.append({
                "gamma": g, "eps": e, "S": S, "atoms": int(m.sum()), "rare_mass": float(m[: (S + 1) // 2].sum() / m.sum()),
                "median_n_star": med, "n_star_gamma2_eps": med * g * g * e,
                "coverage_median": float(np.median(cov)), "ratio_to_coverage": med / float(np.median(cov)),
                "mean_n_star": float(np.mean(n_run)), "coverage_mean": float(np.mean(cov)), "z_vs_coverage": z,
                "censored_fraction": float(r["censored"][sel].mean()),
            })
    points["settings"] = rows
    norm = np.array([row["n_star_gamma2_eps"] for row in rows])
    z = np.array([row["z_vs_coverage"] for row in rows])
    return {
        "experiment": "pretrain-barrier",
        "claims": ["C8"],
        "slopes": slopes,
        "points": points,
        "n_star_gamma2_eps_range": [float(np.nanmin(norm)), float(np.nanmax(norm))],
        "verdict": {
            "eps_slopes_near_minus_1": all(slopes[f"n_star_vs_eps_gamma{g:g}"]["verdict"] == "confirmed"
                                           for g in config["gammas"]),
            "gamma_slopes_near_minus_2": all(slopes[f"n_star_vs_gamma_eps{e:g}"]["verdict"] == "confirmed"
                                             for e in config["epss"]),
            "mean_n_star_matches_coverage_within_4_se": bool(np.all(np.abs(z) <= 4.0)),
        },
        "units": {"n_star": "pre-training samples until Q_q(eps) > k^-N (first log point); Kaplan-Meier medians",
                  "coverage_median": "median first n with never-drawn mass <= eps, NumPy simulation without training"},
    }


def figure(arrays: dict, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    k, N = config["k"], config["N"]
    n_seeds = int(config.get("seeds", 0))
    r = per_run(arrays, config)
    eps_r = np.round(r["eps"], 6)
    fig, ax = plotting.figure(3, width=4.5, height=3.6)
    ecmap = matplotlib.colormaps["viridis"]
    ecol = {e: ecmap(i / max(1, len(config["epss"]) - 1) * 0.85) for i, e in enumerate(config["epss"])}
    styles = ["-", "--", "-.", ":"]
    for gi, g in enumerate(config["gammas"]):
        steps, log_every = horizon(config, g)
        n = np.arange(0, steps + 1, log_every, dtype=np.float64)
        for e in config["epss"]:
            idx = np.flatnonzero((r["gamma"] == g) & (eps_r == _eps_key(e)))
            curves = np.stack([r["log_lq"][i] for i in idx]) / LN10
            pos = n > 0
            plotting.seed_band(ax[0], np.log10(n[pos] * g * g * e), curves[:, pos],
                               label=f"$\\varepsilon$={e:g}" if gi == 0 else None, color=ecol[e], alpha=0.08)
            ax[0].lines[-1].set_linestyle(styles[gi % len(styles)])
    ax[0].axhline(-N * math.log10(k), color="#c0392b", lw=1, ls=":", label="$k^{-N}$ (uniform)")
    ax[0].set(title="LQ of the pre-trained model", xlabel="samples $n \\cdot \\gamma^2 \\varepsilon$",
              ylabel="$Q_q(\\varepsilon)$")
    plotting.log10_axis(ax[0], "x")
    plotting.log10_axis(ax[0], "y")
    ax[0].legend(fontsize=6, loc="center right", title="line style: $\\gamma$", title_fontsize=6)
    rows = summary["points"]["settings"]
    gcmap = matplotlib.colormaps["plasma"]
    for gi, g in enumerate(config["gammas"]):
        sel = r["gamma"] == g
        col = gcmap(gi / max(1, len(config["gammas"]) - 1) * 0.85)
        scaling_series(ax[1], 1.0 / eps_r[sel], np.log10(r["n_star"][sel]), r["censored"][sel],
                       label=f"$\\gamma$={g:g}", color=col, jitter=0.02)
        cov = [row for row in rows if row["gamma"] == g]
        ax[1].plot([1 / row["eps"] for row in cov], [math.log10(row["coverage_median"]) for row in cov],
                   "x", color="k", ms=5, label="coverage median (no training)" if gi == 0 else None)
    for ei, e in enumerate(config["epss"]):
        sel = eps_r == _eps_key(e)
        xs, med = scaling_series(ax[2], r["gamma"][sel], np.log10(r["n_star"][sel]), r["censored"][sel],
                                 label=f"$\\varepsilon$={e:g}", color=ecol[e], jitter=0.01)
        theory_overlay(ax[2], xs, med, -2.0, color="0.5", label="theory $\\propto \\gamma^{-2}$" if ei == 0 else None)
    for gi, g in enumerate(config["gammas"]):
        row = [(1 / x["eps"], x["median_n_star"]) for x in rows if x["gamma"] == g and x["eps"] <= config["eps_fit_max"]]
        xs = np.array([a for a, _ in row])
        theory_overlay(ax[1], xs, np.log10([b for _, b in row]), 1.0, color="0.5",
                       label="theory $\\propto 1/\\varepsilon$ (fit range)" if gi == 0 else None)
    ax[1].set(title="samples until $Q_q(\\varepsilon) > k^{-N}$", xlabel="$1/\\varepsilon$", ylabel="$n^*$")
    ax[2].set(title="samples until $Q_q(\\varepsilon) > k^{-N}$", xlabel="margin $\\gamma$", ylabel="$n^*$")
    for a in ax[1:]:
        plotting.log10_axis(a, "y")
        a.legend(fontsize=6, loc="best")
    plain = FuncFormatter(lambda v, _: f"{v:.3g}")
    for a, ticks in ((ax[1], 1 / np.asarray(config["epss"])), (ax[2], np.asarray(config["gammas"]))):
        a.set_xscale("log")
        a.set_xticks(ticks)
        a.xaxis.set_major_formatter(plain)
        a.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        a.grid(alpha=0.25, which="both")
    fig.suptitle(f"{name}: pre-training with $n \\lesssim 1/(\\gamma^2\\varepsilon)$ samples leaves "
                 f"$Q_q(\\varepsilon) = k^{{-N}}$ (C8); planted k={k}, N={N}, rare block of mass $\\approx 2\\varepsilon$; "
                 f"{plotting.band_note(n_seeds)}", fontsize=9)
    fig.tight_layout()
    return plotting.save(fig, out_dir, name)


def table(summary: dict) -> str:
    lo, hi = (math.nan if x is None else x for x in summary["n_star_gamma2_eps_range"])
    v = summary["verdict"]
    yn = lambda key: "yes" if v[key] else "NO"  # noqa: E731
    z = [abs(row["z_vs_coverage"]) for row in summary["points"]["settings"] if row["z_vs_coverage"] is not None]
    return "\n".join([
        slopes_table(summary["slopes"]),
        f"n* gamma^2 eps in [{lo:.3g}, {hi:.3g}] over all settings; mean n* vs the coverage simulation "
        f"(no training): max |z| = {max(z, default=math.nan):.2f}",
        f"eps slopes ~ -1: {yn('eps_slopes_near_minus_1')}; gamma slopes ~ -2: {yn('gamma_slopes_near_minus_2')}; "
        f"n* = coverage time (|z| <= 4): {yn('mean_n_star_matches_coverage_within_4_se')}",
    ])


@register
class PretrainBarrier(Experiment):
    name = "pretrain-barrier"
    description = "C8: pre-training on n <~ 1/(gamma^2 eps) samples leaves Q_q(eps) = k^-N"
    defaults = DEFAULTS
    default_seeds = 16

    validate = staticmethod(validate)

    def compute(self, config: dict, *, seeds: int, out_dir: Path, resume: bool) -> tuple[dict, dict]:
        arrays, timing = {}, {}
        for g in config["gammas"]:
            result = self.sweep_part(make_run(config, g), {"eps": [float(e) for e in config["epss"]]}, config,
                                     seeds=seeds, out_dir=out_dir, resume=resume, part=f"gamma{g:g}",
                                     desc=f"gamma={g:g}", gamma=g)
            arrays[f"gamma{g:g}_track_log_lik"] = result.outputs["track_log_lik"]
            arrays[f"gamma{g:g}_weights"] = result.outputs["weights"]
            arrays[f"gamma{g:g}_eps"] = result.settings["eps"]
            arrays[f"gamma{g:g}_seed"] = result.seed
            timing[f"gamma{g:g}"] = result.timing
        return arrays, timing

    summarise = staticmethod(summary_of)

    def draw(self, arrays: dict, config: dict, summary: dict, out_dir: Path) -> list[Path]:
        return figure(arrays, config, summary, out_dir, self.name)

    def table(self, summary: dict) -> str:
        return table(summary) + "\n" + self.compute_line(summary)
