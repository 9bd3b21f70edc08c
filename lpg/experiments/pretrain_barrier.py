"""``pretrain-barrier``: supervised pre-training on too few samples leaves the base
model's Likelihood Quantile at the uniform policy's ``k^-N`` (claim C8, PAPER.md §4).

C8: there are distributions on which pre-training with ``n ≲ 1/(γ²ε)`` samples leaves
``Q_q(ε) ≤ k^-N`` — and then (C4–C6) outcome-reward post-training needs ``≈ k^N``
queries, whatever the pre-training algorithm.

Construction (an instance of the claim, stated here because C8 is existential). The
planted-margin family (margin exactly ``γ``, ``S = ⌊k/((k−1)γ²)⌋`` contexts, one-hot
contexts, so a context's weights move only when that context is sampled) with a
non-uniform context distribution (:class:`lpg.tasks.WeightedPlantedTask`): ``S_r = ⌈S/2⌉``
*rare* contexts of weight 1 and ``S − S_r`` *common* ones of weight
``r = max(1, round(S_r(1 − 2ε)/(2ε(S − S_r))))`` (halves up), so the rare block carries
mass ``ρ ≈ 2ε`` spread over ``≈ S/2 ∝ 1/γ²`` contexts. Weights are integers, so the
distribution is exactly ``M = S_r + r(S − S_r)`` equally likely atoms and
:func:`lpg.metrics.likelihood_quantile` over the ``M`` atoms is the exact LQ.

Pre-training: SGD with the adaptive step (:class:`lpg.SGD`, batch 1, from the uniform
policy), so ``n`` = steps = labelled samples seen; the LQ is read at every log point.
A context never sampled keeps ``q(y*|x) = k^-N`` exactly and a sampled one is strictly
above it, so ``Q_q(ε) ≤ k^-N`` exactly while the never-sampled mass exceeds ``ε``: the
barrier lasts ``n* ≈ M ln(ρ/ε) ∝ 1/(γ²ε)`` samples. Measured: ``n*`` = the first log
point with ``Q_q(ε) > k^-N``; slopes of ``ln n*`` against ``ln ε`` (theory ``−1``) and
``ln γ`` (theory ``−2``), the ε fit over ``ε ≤ eps_fit_max`` (at larger ε the common
contexts' unseen mass and the rounding of ``r`` still matter); and, as an independent
check of the mechanism, the median first time the never-sampled mass drops to ``≤ ε``
in a plain NumPy simulation of i.i.d. context draws (:func:`lpg.theory.coverage_times`,
no training at all), which ``n*`` should match.

Verdict: an illustration, not a test. C8 is existential, and on this construction a
context never sampled stays at exactly ``k^-N`` by construction, so what is measured is
the coverage time of the rare block (coupon collecting): the slopes are reported with
their expected values and ranges (``in_range``), and ``REPORT.md`` labels them
``illustration`` — no outcome of this experiment could refute C8.
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
from lpg.analysis import censored_median, fit_record, hitting_time, slopes_table
from lpg.features import max_planted_contexts
from lpg.metrics import quantile_index
from lpg.problem import planted_problem
from lpg.spec import Experiment, Int, Profile, Real, Reals, Sweep, common
from lpg.theory import coverage_times

LN10 = math.log(10.0)


def multiplicities(S: int, eps, xp=np):
    """Integer context weights ``m`` (``(S,)``, ``S ≥ 2``): ``⌈S/2⌉`` rare contexts of weight 1
    first, the rest of weight ``r`` (module docstring). ``xp`` is ``numpy`` or ``jax.numpy``."""
    s_rare = (S + 1) // 2
    s_common = S - s_rare
    # Rounded half up with a little slack, so float32 (traced ε) and float64 agree.
    r = xp.maximum(1.0, xp.floor(s_rare * (1.0 - 2.0 * eps) / (2.0 * eps * s_common) + 0.5 + 1e-4))
    return xp.where(xp.arange(S) < s_rare, 1.0, r)


def horizon(config: dict, gamma: float) -> tuple[int, int]:
    """``(steps, log_every)`` for one γ: ``horizon_factor × M`` at the smallest ε, rounded
    up to a multiple of ``log_points``."""
    S = max_planted_contexts(config["k"], gamma)
    m_max = max(int(round(float(np.sum(multiplicities(S, e))))) for e in config["epss"])
    log_every = max(1, int(math.ceil(config["horizon_factor"] * m_max / config["log_points"])))
    return log_every * config["log_points"], log_every


def eps_atoms(S: int, epss) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(eps, weights, j)``: each ε and its context weights ``(E, S)`` as the sweep's runs see them (float32) and
    the atom index ``j = ⌊εM⌋`` of the LQ (:func:`lpg.metrics.quantile_index`, in float64 as on the host)."""
    eps = np.asarray(epss, np.float32)
    weights = np.stack([multiplicities(S, float(e)) for e in eps]).astype(np.float32)
    return eps, weights, np.asarray([quantile_index(int(w.sum()), float(e)) for w, e in zip(weights, eps)], np.int32)


def weighted_lq(log_lik, weights, j):
    """Exact ``log Q_q(ε)`` of the ``M`` equally likely atoms (context ``c`` repeated ``weights[c]`` times),
    given ``j`` of :func:`eps_atoms`: the log-likelihood of the context holding atom ``j`` of the sorted atoms
    (``log 1 = 0`` when ``j ≥ M``), as :func:`lpg.likelihood_quantile` of the repeated atoms."""
    order = jnp.argsort(log_lik)
    ends = jnp.cumsum(jnp.round(weights).astype(jnp.int32)[order])  # one past each sorted context's last atom
    p = jnp.minimum(jnp.sum(ends <= j), log_lik.shape[-1] - 1)
    return jnp.where(j < ends[-1], log_lik[order][p], 0.0)


def make_run(config: dict, gamma: float):
    """``run(key, eps)``: SGD pre-training on the rare-block distribution of ``eps``; the ``train`` curve
    ``log_lq`` (the exact ``log Q_q(ε)``, :func:`weighted_lq`) at each log point."""
    steps, log_every = horizon(config, gamma)
    S = max_planted_contexts(config["k"], gamma)
    eps_tab, weights_tab, j_tab = (jnp.asarray(a) for a in eps_atoms(S, config["epss"]))
    alg = lpg.SGD(batch_size=1)

    def run(key, eps):
        i = jnp.argmin(jnp.abs(eps - eps_tab))  # eps is one of the sweep's float32 values exactly
        weights = weights_tab[i]
        k_task, k_run = jax.random.split(key)
        planted = lpg.make_planted(k_task, k=config["k"], N=config["N"], gamma=gamma)
        task = planted.weighted(jnp.log(weights))
        problem = planted_problem(task, key=k_task)
        c = lpg.train(alg, problem, lpg.hyper(), k_run, steps=steps, log_every=log_every,
                      w0=problem.fmap.init_params()).curves
        log_lq = jax.vmap(weighted_lq, (0, None, None))(c.track_log_lik, weights, j_tab[i])
        return {"curves": {"train": {"step": c.step, "log_lq": log_lq}}}

    return run


def per_run(table, config: dict) -> dict:
    """Flat per-run arrays ``gamma``, ``eps``, ``n_star``, ``censored`` in run order, and the lists of each run's
    log points ``n`` and LQ curve ``log_lq`` (``(P+1,)``)."""
    floor = -config["N"] * math.log(config["k"])
    level = floor + 1e-4 * max(1.0, abs(floor))  # above k^-N by more than the float32 rounding of N log-softmaxes
    out = {"gamma": [], "eps": [], "n_star": [], "censored": [], "n": [], "log_lq": []}
    for g in config["gammas"]:
        rows = table.where(part=f"gamma{g:g}", series="train")
        n = rows.by_run("step")[0].astype(np.float64)
        for e, lq in zip(rows.per_run("eps"), rows.by_run("log_lq").astype(np.float64)):
            t, c = hitting_time(lq, n, level, above=True)
            for key, v in zip(out, (g, float(e), float(t[0]), bool(c[0]), n, lq)):
                out[key].append(v)
    return {key: v if key in ("n", "log_lq") else np.asarray(v) for key, v in out.items()}


def setting_row(config: dict, r: dict, g: float, e: float) -> dict:
    """One (γ, ε) setting: the measured ``n*`` against the coverage-time simulation (``r``: :func:`per_run`)."""
    S = max_planted_contexts(config["k"], g)
    sel = (r["gamma"] == g) & (np.round(r["eps"], 6) == np.round(e, 6))
    med = censored_median(r["n_star"][sel], r["censored"][sel])
    m = multiplicities(S, float(np.float32(e)))  # the weights the runs of ε trained on (eps_atoms)
    _, log_every = horizon(config, g)
    # On the log-point grid, like the measured n*.
    cov = np.ceil(coverage_times(m, e, config["n_coverage_sims"], seed=17) / log_every) * log_every
    n_run = r["n_star"][sel]
    se = math.sqrt(np.var(n_run, ddof=1) / n_run.size + np.var(cov, ddof=1) / cov.size)
    z = (float(np.mean(n_run)) - float(np.mean(cov))) / se if se > 0 else 0.0
    return {
        "gamma": g, "eps": e, "S": S, "atoms": int(m.sum()), "rare_mass": float(m[: (S + 1) // 2].sum() / m.sum()),
        "median_n_star": med, "n_star_gamma2_eps": med * g * g * e,
        "coverage_median": float(np.median(cov)), "ratio_to_coverage": med / float(np.median(cov)),
        "mean_n_star": float(np.mean(n_run)), "coverage_mean": float(np.mean(cov)), "z_vs_coverage": z,
        "censored_fraction": float(r["censored"][sel].mean()),
    }


def summary_of(table, config: dict) -> dict:
    r = per_run(table, config)
    eps_r = np.round(r["eps"], 6)
    slopes = {}
    for g in config["gammas"]:
        sel = r["gamma"] == g
        slopes[f"n_star_vs_eps_gamma{g:g}"] = fit_record(
            eps_r[sel], r["n_star"][sel], r["censored"][sel], theory=-1.0, accept=(-1.25, -0.75),
            regime=[0.0, config["eps_fit_max"]],
            note="d ln n* / d ln eps for eps <= eps_fit_max (C8; larger eps leave the asymptotic regime)",
            illustration=True)
    for e in config["epss"]:
        sel = eps_r == np.round(e, 6)
        slopes[f"n_star_vs_gamma_eps{e:g}"] = fit_record(
            r["gamma"][sel], r["n_star"][sel], r["censored"][sel], theory=-2.0, accept=(-2.5, -1.5),
            note="d ln n* / d ln gamma (C8)", illustration=True)
    rows = [setting_row(config, r, g, e) for g in config["gammas"] for e in config["epss"]]
    norm, z = (np.array([row[key] for row in rows]) for key in ("n_star_gamma2_eps", "z_vs_coverage"))
    return {
        "experiment": "pretrain-barrier",
        "claims": ["C8"],
        "slopes": slopes,
        "points": {"settings": rows},
        "n_star_gamma2_eps_range": [float(np.nanmin(norm)), float(np.nanmax(norm))],
        "verdict": {
            "eps_slopes_near_minus_1": all(slopes[f"n_star_vs_eps_gamma{g:g}"]["in_range"] for g in config["gammas"]),
            "gamma_slopes_near_minus_2": all(slopes[f"n_star_vs_gamma_eps{e:g}"]["in_range"] for e in config["epss"]),
            "mean_n_star_matches_coverage_within_4_se": bool(np.all(np.abs(z) <= 4.0)),
        },
        "units": {"n_star": "pre-training samples until Q_q(eps) > k^-N (first log point); Kaplan-Meier medians",
                  "coverage_median": "median first n with never-drawn mass <= eps, NumPy simulation without training"},
    }


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    k, N = config["k"], config["N"]
    r = per_run(table, config)
    eps_r = np.round(r["eps"], 6)
    fig, ax = plotting.figure(3, width=4.5, height=3.6)
    ecmap = matplotlib.colormaps["viridis"]
    ecol = {e: ecmap(i / max(1, len(config["epss"]) - 1) * 0.85) for i, e in enumerate(config["epss"])}
    for gi, g in enumerate(config["gammas"]):
        for e in config["epss"]:
            idx = np.flatnonzero((r["gamma"] == g) & (eps_r == np.round(e, 6)))
            n = r["n"][idx[0]]
            curves = np.stack([r["log_lq"][i] for i in idx]) / LN10
            pos = n > 0
            plotting.seed_band(ax[0], np.log10(n[pos] * g * g * e), curves[:, pos],
                               label=f"$\\varepsilon$={e:g}" if gi == 0 else None, color=ecol[e], alpha=0.08)
            ax[0].lines[-1].set_linestyle(["-", "--", "-.", ":"][gi % 4])
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
        plotting.scaling_series(ax[1], 1.0 / eps_r[sel], np.log10(r["n_star"][sel]), r["censored"][sel],
                                label=f"$\\gamma$={g:g}", color=col, jitter=0.02)
        cov = [row for row in rows if row["gamma"] == g]
        ax[1].plot([1 / row["eps"] for row in cov], [math.log10(row["coverage_median"]) for row in cov],
                   "x", color="k", ms=5, label="coverage median (no training)" if gi == 0 else None)
    for ei, e in enumerate(config["epss"]):
        sel = eps_r == np.round(e, 6)
        xs, med = plotting.scaling_series(ax[2], r["gamma"][sel], np.log10(r["n_star"][sel]), r["censored"][sel],
                                          label=f"$\\varepsilon$={e:g}", color=ecol[e], jitter=0.01)
        plotting.theory_overlay(ax[2], xs, med, -2.0, color="0.5",
                                label="theory $\\propto \\gamma^{-2}$" if ei == 0 else None)
    for gi, g in enumerate(config["gammas"]):
        fit = [x for x in rows if x["gamma"] == g and x["eps"] <= config["eps_fit_max"]]
        med = np.array([x["median_n_star"] for x in fit], float)  # None (not estimable) -> nan
        plotting.theory_overlay(ax[1], np.array([1 / x["eps"] for x in fit]), np.log10(med), 1.0, color="0.5",
                                label="theory $\\propto 1/\\varepsilon$ (fit range)" if gi == 0 else None)
    ax[1].set(title="samples until $Q_q(\\varepsilon) > k^{-N}$", xlabel="$1/\\varepsilon$", ylabel="$n^*$")
    ax[2].set(title="samples until $Q_q(\\varepsilon) > k^{-N}$", xlabel="margin $\\gamma$", ylabel="$n^*$")
    for a in ax[1:]:
        plotting.log10_axis(a, "y")
        a.legend(fontsize=6, loc="best")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.3g}")
    for a, ticks in ((ax[1], 1 / np.asarray(config["epss"])), (ax[2], np.asarray(config["gammas"]))):
        a.set_xscale("log")
        a.set_xticks(ticks)
        a.xaxis.set_major_formatter(plain)
        a.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        a.grid(alpha=0.25, which="both")
    title = (f"{name}: pre-training with $n \\lesssim 1/(\\gamma^2\\varepsilon)$ samples leaves "
             f"$Q_q(\\varepsilon) = k^{{-N}}$ (C8); planted k={k}, N={N}, rare block of mass "
             f"$\\approx 2\\varepsilon$; {plotting.band_note(int(config.get('seeds', 0)))}")
    return plotting.save(fig, out_dir, name, title)


def _two_contexts(c: dict):
    """A rare and a common context at every margin."""
    bad = [g for g in c["gammas"] if max_planted_contexts(c["k"], g) < 2]
    return (f"gamma must allow at least two planted contexts for k={c['k']} (a rare and a common one), got {bad[0]}"
            if bad else None)


def _two_in_fit(c: dict):
    ok = sum(e <= c["eps_fit_max"] for e in c["epss"]) >= 2
    return None if ok else f"eps_fit_max must leave at least two of epss={c['epss']} in the fit, got {c['eps_fit_max']}"


class PretrainBarrier(Experiment):
    name = "pretrain-barrier"
    description = "C8: pre-training on n <~ 1/(gamma^2 eps) samples leaves Q_q(eps) = k^-N"
    claims = ("C8",)
    settings = {
        **common(k=4, N=16, chunk_size=0),
        "gammas": Reals([0.5, 0.35, 0.25, 0.18], "margins of the planted task (one sweep each)", low=0.0, high=1.0,
                        open_low=True, min_len=2, distinct=True),
        "epss": Reals([0.2, 0.1, 0.05, 0.025], "quantile levels eps (the rare block has mass ~2 eps)", low=0.0,
                      high=0.5, open_low=True, open_high=True, min_len=2, distinct=True),
        "eps_fit_max": Real(0.1, "the eps slopes are fitted over eps <= eps_fit_max", low=0.0, high=0.5,
                            open_low=True, open_high=True),
        "horizon_factor": Real(4.0, "pre-training steps per atom M at the smallest eps", low=0.0, open_low=True),
        "log_points": Int(512, "log points per run (n* is read on this grid)", low=2),
        "n_coverage_sims": Int(2000, "simulations of the coverage-time reference per setting", low=1),
    }
    constraints = (_two_contexts, _two_in_fit)
    default_seeds = 16
    profiles = {
        "gpu": Profile(128, {"N": 64, "gammas": [0.5, 0.35, 0.25, 0.18, 0.125, 0.09],
                             "epss": [0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625], "log_points": 2048},
                       "margins to 0.09 (S = 164 contexts) and eps to 1/160, 128 seeds"),
        "quick": Profile(2, {}),
    }

    def sweeps(self, config):
        """One sweep per γ (its number of contexts S fixes the shapes), over ε."""
        for g in config["gammas"]:
            yield Sweep(f"gamma{g:g}", make_run(config, g), {"eps": [float(e) for e in config["epss"]]},
                        {"gamma": g}, facts={"gamma": g})

    summarise = staticmethod(summary_of)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary):
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
        ]) + "\n" + self.timing_line(summary)
