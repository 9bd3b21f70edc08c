"""``mc-prm``: a process reward paid for with outcome queries (issue 14, question 2).

Question. The practical process reward is estimated: a prefix's label is 1 when one of
``r`` rollouts completing it (from the base model ``q0``, or the current policy) is
accepted by the outcome verifier (Math-Shepherd-style labelling,
:class:`lpg.mc_prm.MonteCarloVerifier`). Counting every outcome query the labelling
spends, is Algorithm 2's total still linear in ``N``, and for which base models does it
beat the outcome reward used directly (Algorithm 1, :class:`lpg.BestOfM`)?

Setting. The planted task (:func:`lpg.make_planted`, margin ``γ``, ``S`` uniform
contexts; exact error over all of them). Base models from
:func:`lpg.tasks.planted_alpha_base` with the same correct-token probability ``p`` at
every position of every context, in two families:

* ``p0``: ``p = p0`` fixed, so ``Q_{q0}(ε) = p0^N`` falls exponentially in ``N``
  while the token-level LQ ``Q^TL = p0`` does not (where the exact PRM wins, C9);
* ``alpha0``: ``q0(y*|x) = α0`` fixed, ``p = α0^{1/N}``: ``Q = α0`` and ``Q^TL → 1``
  (both bounded below in ``N``).

Measured: outcome queries (Algorithm 2: on-policy checks plus every rollout and
last-position check of the labelling) until ``err(w) ≤ ε``
(:func:`lpg.hitting.run_until`, censored runs kept, Kaplan–Meier medians over seeds),
for Algorithm 2 with the MC-PRM (:class:`lpg.mc_prm.MonteCarloTokenBestOfM`, exact event
path, ``m = min(⌈1/Q^TL⌉, k)·⌈ln(N/δ)⌉`` candidates per position, its per-token step)
at every ``r`` of ``rs`` and each rollout policy of ``rollouts``, and for Algorithm 1
(``m = min(⌈1/Q⌉, k^N)``, the paper's response-level step), at every ``N`` of ``Ns``.

Prediction (derived before the runs). Along ``y*`` the suffix likelihood
``s_i = q0(y*_{>i} | x, y*_{≤i}) = p^{N−i}`` is at least the whole response's ``α = p^N``
and equals ``α/p`` after the first token: labelling the first position is as hard as
the outcome reward itself (false reject ``(1 − α/p)^r``). A walk can only reach position
``i + 1`` through a positive label at ``i``, i.e. a rollout that *is* ``y*``, and before
the first update on a context the on-policy sample is ``q0`` (a planted context has its
own weights, and current-policy rollouts are ``q0`` there too). So every query before
the first update on a context finds ``y*`` with probability at most
``max(α, ρ_1 α/p) ≤ α`` (``ρ_1 = p/2 + 1/(2k)``), against ``½α + ½k^{-N} ≥ ½α`` per
fallback draw of Algorithm 1: the LQ floor of C6 binds the MC-PRM, which is itself an
outcome-query method, and it can beat Algorithm 1 by at most a factor about 2 on the
first success of each context. Per iteration a walk that stops at position 1 costs
``m·r`` queries and passes it with probability ``≈ m ρ_1 r α/p`` when ``r α/p ≪ 1``:
about ``p/(ρ_1 α)`` queries per first-position success, *independent of ``r``*. Hence:

1. ``p0`` family: the MC-PRM inherits the ORM's exponential cost, ``ln(queries)`` vs
   ``N`` with slope ``ln(1/p0)`` (C5's, from ``1/Q = p0^{−N}``), for every ``r`` and both
   rollout policies: **acceptance** ``[0.6, 1.4]·ln(1/p0)`` over the ``N`` with
   ``1/Q ≥ regime_factor/ε`` (the band is wider than C5's ±15%: the ``N``-independent
   on-policy phase, C9's ``1/(γ²ε)`` term, flattens the low end of a short range).
2. ``p0`` family, base rollouts, at the largest ``N``: the queries do not depend on
   ``r`` while ``r α/p ≪ 1``: slope of ``ln(queries)`` vs ``ln r`` in **[−0.3, 0.3]**.
3. ``alpha0`` family: suffix likelihoods are bounded below (``s_i ≥ α0``), a walk
   costs ``≈ Σ_i (wrong candidates·r + 1/s_i)``, i.e. ``O(N·r)`` plus the on-policy
   phase, so the MC-PRM's cost is at most linear in ``N``: log-log slope against ``N``
   in **[−0.25, 1.25]** for every ``r`` and rollout policy; Algorithm 1's cost, governed
   by ``Q = α0``, is flat in ``N`` (reported, not a claim).
4. Who wins: by the floor above, the MC-PRM never beats Algorithm 1 by more than a
   factor 2: for every base, ``N``, ``r`` and rollout policy, the ratio of median queries
   MC-PRM / ORM has a 95% interval reaching **≥ 0.5**. We expect no base model here where
   it wins at all (ratio's interval below 1): in the ``p0`` family the constants are
   about equal, in the ``alpha0`` family the ORM needs ``O(1/α0)`` and the MC-PRM
   ``O(N·r)`` per walk.

The ratios (``summary.ratios``: per base, ``N``, ``r``, rollout; bootstrap over seeds of
both algorithms' Kaplan–Meier medians) are the measured answer; ``summary.wins`` lists
where the MC-PRM's interval lies below 1.

Added after the first run at the defaults (not part of the prediction above). That run
put the MC-PRM well below Algorithm 1 in the ``p0`` family, which the floor argument
does not allow for the *first* success on a context. The floor bounds the cost of a
first success, not what an update does: Algorithm 2 takes one adaptive step per
verified token, Algorithm 1 one step on the whole response (PAPER.md §3 leaves the
reading open), and on the planted task, whose positions share a context's weights, the
per-token steps of a verified prefix move the whole response's likelihood much further
than one response-level step, so Algorithm 1 needs more expensive successes. To separate
the verifier from the reading of the step, Algorithm 1 also runs with the per-token step
(``orm_step_units``), and prediction 4 is tested against each reading separately; the
verdicts against the response-level reading are the stated prediction, those against the
per-token reading are a check added after seeing data, and are named so. A second
difference is the size of an iteration: Algorithm 1 with the paper's ``m ≈ 1/Q`` can
spend ``1/Q`` fallback draws between two on-policy samples, while an MC-PRM walk that
stops at the first position costs ``m·r`` queries, so once the policy has moved the MC-PRM
samples on-policy far more often per query. Algorithm 1 with ``m = 1`` (``orm_m1``: one
fallback draw per iteration, under each reading) separates that too; its verdicts are
likewise named as added after the first run. Also added
after the first run: the floor of the argument above is checked directly
(``summary.floor``, :func:`floor_of`): each learner's restricted mean queries over
``Σ_c 1/max(α, ρ_1 α/p)`` (relaxed as in :func:`lpg.theory.lq_floor`), at every point,
with a 95% bootstrap interval; a mean below the floor would be an engine or derivation
error. It says how far above the floor each learner's constant is.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import plotting
from lpg.analysis import _km_median_batch, censored_median, checks_line, fit_record, slopes_table
from lpg.hitting import error_at_most, run_until
from lpg.mc_prm import ROLLOUTS, MonteCarloTokenBestOfM, MonteCarloVerifier
from lpg.problem import base_quantiles, planted_problem
from lpg.spec import Bool, Choices, Experiment, Int, Ints, PER_POINT, Profile, Real, Sweep, common, divides
from lpg.features import max_planted_contexts
from lpg.theory import lq_floor, orm_log_m, prm_log_m

LN10 = math.log(10.0)
FAMILIES = ("p0", "alpha0")
COLORS = {1: "#9ecae1", 2: "#6baed6", 4: "#4292c6", 8: "#2171b5", 16: "#08519c", 32: "#08306b", 64: "#041f4a"}


def log_token_p(config: dict, family, N):
    """``log p``, the base's correct-token probability: ``log p0`` (``token``) or
    ``log α0 / N`` (``response``); ``family`` 0 or 1, traced."""
    return jnp.where(family == 0, math.log(config["p0"]), math.log(config["alpha0"]) / N)


def make_run(config: dict, alg: str, rollout: str = "base", unit: str = "response"):
    """``run(key, N, family, r, m1)`` of one seed: the task (padded to ``max(Ns)``) and
    base model, then :func:`run_until` ``err ≤ ε`` with Algorithm 1 (``alg="orm"``, its
    step read as ``unit``, the paper's ``m`` or ``m = 1`` when ``m1``; ``r`` unused) or
    Algorithm 2 with the MC-PRM (``"mc"``; ``m1`` unused)."""
    k, eps, pad = config["k"], config["eps"], max(config["Ns"])

    def run(key, N, family, r, m1):
        k_task, k_run = jax.random.split(key)
        task = lpg.make_planted(k_task, k=k, N=pad, gamma=config["gamma"])
        w0 = lpg.tasks.planted_alpha_base(task, log_alpha=pad * log_token_p(config, family, N))
        problem = planted_problem(task, key=k_task, base=w0, length=N)
        log_q, log_tl = base_quantiles(problem, eps)
        if alg == "orm":
            algorithm = lpg.BestOfM(batch_size=config["batch_size"], step_unit=unit)
            log_m = jnp.where(m1 > 0, 0.0, orm_log_m(log_q, N, k))  # m1: Algorithm 1 with m = 1
        else:
            algorithm = MonteCarloTokenBestOfM(MonteCarloVerifier(r, rollout=rollout), batch_size=config["batch_size"])
            log_m = prm_log_m(log_tl, k, N, config["delta"])
        hyper = lpg.Hyper(jnp.float32(1.0), log_m.astype(jnp.float32), jnp.float32(jnp.inf))
        budget = config["orm_max_steps" if alg == "orm" else "max_steps"]
        hit = run_until(algorithm, problem, hyper, k_run, max_steps=budget, target=error_at_most(eps),
                        check_every=config["check_every"])
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_q0": log_q,
                "log_q0_tl": log_tl}

    return run


def series(table, alg: str, family: int, rollout: str = "none", r: int | None = None, unit: str | None = None,
           m1: int = 0):
    """``(N, ln queries, censored)`` of one series' runs."""
    sel = (table["alg"] == alg) & (table["family"] == family) & (table["rollout"] == rollout) & (table["m1"] == m1)
    if r is not None:
        sel &= table["r"] == r
    if unit is not None:
        sel &= table["step_unit"] == unit
    rows = table.rows(sel)
    return rows["N"].astype(float), rows["log_queries"].astype(np.float64), ~rows["hit"].astype(bool)


def ratio_record(mc, orm, *, n_boot: int, seed: int = 0) -> dict:
    """Median queries of the MC-PRM over Algorithm 1's at one point, with a 95% interval
    (both algorithms' runs resampled, Kaplan–Meier medians of each draw; a draw whose
    MC-PRM median is censored counts as ``+inf``, one whose ORM median is, as 0)."""
    rng = np.random.default_rng(seed)
    (tm, cm), (to, co) = mc, orm
    med = censored_median(tm, cm) / censored_median(to, co)
    bm = rng.integers(0, tm.size, (n_boot, tm.size))
    bo = rng.integers(0, to.size, (n_boot, to.size))
    num = np.nan_to_num(_km_median_batch(tm[bm], cm[bm]), nan=np.inf)
    den = np.nan_to_num(_km_median_batch(to[bo], co[bo]), nan=np.inf)
    with np.errstate(invalid="ignore"):
        boot = np.nan_to_num(num / den, nan=1.0)  # inf/inf: both censored, no evidence either way
    ci = [float(np.percentile(boot, 2.5, method="lower")), float(np.percentile(boot, 97.5, method="higher"))]
    return {"ratio": float(med), "ci": ci,
            "mc_censored": int(cm.sum()), "orm_censored": int(co.sum())}


def floor_of(config: dict, family: int, N: int) -> float:
    """The expected-query floor of the module docstring's argument: before its first update
    on a context a learner's query finds ``y*`` with probability at most
    ``max(α, ρ_1 α/p)`` (on-policy ``q0``; a correct first candidate, ``ρ_1 = p/2 + 1/(2k)``,
    completed by a rollout, ``s_1 = α/p``), and enough contexts must be learnt for the
    error to reach ``ε`` (:func:`lpg.theory.lq_floor` with those probabilities, which only
    lowers it)."""
    log_p = float(log_token_p(config, family, N))
    p, alpha, k = math.exp(log_p), math.exp(N * log_p), config["k"]
    hit = max(alpha, (p / 2 + 1 / (2 * k)) * alpha / p)
    return lq_floor(np.full(max_planted_contexts(k, config["gamma"]), hit), config["eps"])


def floor_record(log_queries, censored, floor: float, *, n_boot: int, seed: int = 0) -> dict:
    """Restricted mean queries (censored runs at their budget, which only lowers it) over
    the floor, with a 95% bootstrap interval over the runs."""
    q = np.exp(np.asarray(log_queries, np.float64))
    boot = q[np.random.default_rng(seed).integers(0, q.size, (n_boot, q.size))].mean(axis=1) / floor
    return {"ratio": float(q.mean() / floor), "ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "floor": floor, "censored": int(np.sum(censored))}


STEP_TEXT = {"response": "response-level step", "token": "per-token step"}


def comparators(config: dict) -> dict[str, tuple[str, int]]:
    """The versions of Algorithm 1 the MC-PRM is compared with: ``name -> (reading of the
    step, m1)``: the paper's ``m`` under each reading of ``orm_step_units``, and ``m = 1``
    under each when ``orm_m1`` (module docstring: all but the first were added after the
    first run)."""
    out = {}
    for m1 in (0, 1) if config["orm_m1"] else (0,):
        for u in config["orm_step_units"]:
            out[u + ("_m1" if m1 else "")] = (u, m1)
    return out


def comparator_text(name: str, unit: str, m1: int) -> str:
    added = "the stated prediction" if name == "response" else "added after the first run"
    return f"Alg. 1, {STEP_TEXT[unit]}, " + ("m = 1" if m1 else "the paper's m = min(ceil(1/Q), k^N)") + f" ({added})"


def _win_checks(ratios: dict, text: str) -> dict:
    his = [math.inf if rec["ci"][1] is None else rec["ci"][1] for rec in ratios.values()]
    return {f"never beats {text} by 2x (every ratio's CI reaches 0.5)": all(h >= 0.5 for h in his),
            f"beats {text} nowhere (no ratio's CI below 1)": all(h >= 1.0 for h in his)}


def summary_of(table, config: dict) -> dict:
    eps, n_boot, rs = config["eps"], config["n_boot"], config["rs"]
    comps = comparators(config)
    fams = [FAMILIES.index(f) for f in config["families"]]
    slopes, bases, floors = {}, {}, {}
    ratios = {c: {} for c in comps}
    for fam in fams:
        fname = FAMILIES[fam]
        Ns, lq0, ltl = _per_N(table, fam)
        bases[fname] = {"N": Ns.tolist(), "log10_Q": (lq0 / LN10).tolist(), "log10_Q_TL": (ltl / LN10).tolist()}
        in_regime = Ns[-lq0 >= math.log(config["regime_factor"] / eps)]
        regime = [float(in_regime.min()), float(in_regime.max())] if in_regime.size else [math.inf, math.inf]
        rate = -math.log(config["p0"])
        for c, (u, m1) in comps.items():
            x, lq, cens = series(table, "orm", fam, unit=u, m1=m1)
            name = f"orm_{fname}" + ("" if u == "response" else "_tokenstep") + ("_m1" if m1 else "")
            for n in np.unique(x):
                floors[f"{name}_N{int(n)}"] = floor_record(lq[x == n], cens[x == n], floor_of(config, fam, int(n)),
                                                           n_boot=n_boot)
            if fname == "alpha0":
                slopes[name] = fit_record(x, lq, cens, theory=0.0, log_x=True, log_y=False, n_boot=n_boot,
                                          note=f"Algorithm 1, {u} step: ln(queries) vs ln N at fixed alpha0 (reported)")
            else:
                slopes[name] = fit_record(x, lq, cens, theory=rate, log_x=False, log_y=False, regime=regime,
                                          n_boot=n_boot, note=f"Algorithm 1, {u} step: ln(queries) vs N (C5, reported)")
        for ro in config["rollouts"]:
            for r in rs:
                xm, lm, cm = series(table, "mc", fam, ro, r)
                name = f"mc_{ro}_{fname}_r{r}"
                if fname == "p0":
                    slopes[name] = fit_record(xm, lm, cm, theory=rate, accept=(0.6 * rate, 1.4 * rate), log_x=False,
                                              log_y=False, regime=regime, n_boot=n_boot, claim="Q2",
                                              note="prediction 1: ln(queries) vs N, theory ln(1/p0) (inherits C5)")
                else:
                    slopes[name] = fit_record(xm, lm, cm, theory=1.0, accept=(-0.25, 1.25), log_x=True, log_y=False,
                                              n_boot=n_boot, claim="Q2",
                                              note="prediction 3: ln(queries) vs ln N, at most linear")
                for n in np.unique(xm):
                    floors[f"{name}_N{int(n)}"] = floor_record(lm[xm == n], cm[xm == n], floor_of(config, fam, int(n)),
                                                               n_boot=n_boot)
                for c, (u, m1) in comps.items():
                    x, lq, cens = series(table, "orm", fam, unit=u, m1=m1)
                    for n in np.unique(xm):
                        rec = ratio_record((np.exp(lm[xm == n]), cm[xm == n]), (np.exp(lq[x == n]), cens[x == n]),
                                           n_boot=n_boot)
                        rec.update(family=fname, rollout=ro, r=int(r), N=int(n))
                        ratios[c][f"{name}_N{int(n)}"] = rec
            if fname == "p0" and len(rs) >= 2:
                big = float(max(config["Ns"]))
                sel = table.rows((table["alg"] == "mc") & (table["family"] == fam) & (table["rollout"] == ro)
                                 & (table["N"] == big))
                accept = (-0.3, 0.3) if ro == "base" else None
                slopes[f"mc_{ro}_p0_vs_r"] = fit_record(
                    sel["r"].astype(float), sel["log_queries"].astype(np.float64), ~sel["hit"].astype(bool),
                    theory=0.0, accept=accept, log_x=True, log_y=False, n_boot=n_boot, claim="Q2" if accept else "",
                    note=f"prediction 2: ln(queries) vs ln r at N={int(big)}, flat while r*alpha/p << 1"
                         + ("" if accept else " (current-policy rollouts: reported)"))

    def all_confirmed(pred):
        recs = [rec for n, rec in slopes.items() if pred(n) and "accept" in rec]
        return bool(recs) and all(rec["verdict"] == "confirmed" for rec in recs)

    verdicts = {
        "prediction 1: the p0 family inherits the ORM's exponential cost":
            all_confirmed(lambda n: n.startswith("mc_") and "_p0_r" in n),
        "prediction 2: flat in r (p0 family, base rollouts)": all_confirmed(lambda n: n.endswith("_p0_vs_r")),
        "prediction 3: at most linear in N (alpha0 family)":
            all_confirmed(lambda n: n.startswith("mc_") and "_alpha0_r" in n),
    }
    for c, (u, m1) in comps.items():
        verdicts.update({f"prediction 4: {k}": v for k, v in _win_checks(ratios[c], comparator_text(c, u, m1)).items()})
    verdicts["the floor: no learner's mean queries below it (every CI reaches 1; added after the first run)"] = all(
        rec["ci"][1] >= 1.0 for rec in floors.values())
    return {
        "experiment": "mc-prm",
        "claims": ["Q2"],
        "slopes": slopes,
        "ratios": ratios,
        "wins": {c: [n for n, rec in ratios[c].items() if rec["ci"][1] < 1.0] for c in comps},
        "floor": floors,
        "comparators": {c: comparator_text(c, *v) for c, v in comps.items()},
        "bases": bases,
        "censored_runs": int(np.sum(~table["hit"].astype(bool))),
        "runs": int(table["hit"].size),
        "verdict": {k: "confirmed" if v else "not confirmed" for k, v in verdicts.items()},
        "units": {"queries": "outcome queries until err(w) <= eps, labelling rollouts included; Kaplan-Meier medians",
                  "ratio": "median queries of Algorithm 2 with the MC-PRM / median of Algorithm 1 (per reading of "
                           "its step), 95% bootstrap CI over both algorithms' seeds"},
    }


def _per_N(table, fam: int):
    """``(Ns, ln Q_q0(ε), ln Q^TL_q0(ε))`` of a family's base models."""
    rows = table.rows((table["alg"] == "orm") & (table["family"] == fam))
    Ns = np.unique(rows["N"])
    first = [int(np.flatnonzero(rows["N"] == n)[0]) for n in Ns]  # every row of a point has the same base
    return Ns.astype(float), rows["log_q0"][first].astype(np.float64), rows["log_q0_tl"][first].astype(np.float64)


ORM_STYLE = {"response": dict(color=plotting.COLORS["orm"], marker="o", ls="-"),
             "token": dict(color="#e08a3c", marker="D", ls="-.")}


def figure(table, config: dict, summary: dict, out_dir: Path) -> list[Path]:
    fams = [FAMILIES.index(f) for f in config["families"]]
    comps = comparators(config)
    n_panels = len(fams) + len(comps)
    fig, axes = plotting.figure(2, (n_panels + 1) // 2, width=5.6, height=4.4)
    for ax in axes[n_panels:]:
        ax.axis("off")
    for ax, fam in zip(axes, fams):
        for name, (u, m1) in comps.items():
            x, lq, c = series(table, "orm", fam, unit=u, m1=m1)
            style = dict(ORM_STYLE[u], **({"ls": ":", "marker": "x"} if m1 else {}))
            label = f"Alg. 1 (ORM), {STEP_TEXT[u]}" + (", m = 1" if m1 else "")
            plotting.scaling_series(ax, x, lq / LN10, c, label=label, jitter=0.1, log_x=False, **style)
        for ro, ls in zip(config["rollouts"], ("-", "--")):
            for r in config["rs"]:
                xm, lm, cm = series(table, "mc", fam, ro, r)
                plotting.scaling_series(ax, xm, lm / LN10, cm, label=f"Alg. 2 + MC-PRM, r={r}, {ro} rollouts",
                                        color=COLORS.get(r, "#08519c"), marker="s" if ro == "base" else "^", ls=ls,
                                        jitter=0.1, log_x=False)
        Ns = summary["bases"][FAMILIES[fam]]["N"]
        plotting.lower_bound_overlay(ax, Ns, [math.log10(floor_of(config, fam, int(n))) for n in Ns], color="k",
                                     label="floor $\\sum_c 1/\\max(\\alpha, \\rho_1\\alpha/p)$ on the mean")
        plotting.log10_axis(ax)
        ax.set_xlabel("response length N")
        ax.set_ylabel(f"outcome queries to error $\\leq {config['eps']:g}$")
        title = (f"p0 family: $p_0={config['p0']:g}$, $Q=p_0^N$, $Q^{{TL}}=p_0$" if FAMILIES[fam] == "p0"
                 else f"alpha0 family: $Q=\\alpha_0={config['alpha0']:g}$, $Q^{{TL}}=\\alpha_0^{{1/N}}$")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=6, frameon=False, loc="upper left")
    for ax, (cname, (u, m1)) in zip(axes[len(fams):], comps.items()):
        for rec in summary["ratios"][cname].values():
            fam = FAMILIES.index(rec["family"])
            off = 0.15 * (config["rs"].index(rec["r"]) - len(config["rs"]) / 2) + 0.05 * fam
            y, lo, hi = (_num(v) for v in (rec["ratio"], *rec["ci"]))
            if not math.isfinite(y):
                continue
            ax.errorbar(rec["N"] + off, y, yerr=[[max(y - lo, 0.0)], [max(min(hi, 1e6) - y, 0.0)]],
                        color=COLORS.get(rec["r"], "#08519c"), marker="os"[fam], ms=4, lw=0.8, capsize=1.5,
                        mfc="none" if rec["rollout"] == "current" else None)
        ax.axhline(1.0, color="k", lw=1)
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set(xlabel="response length N", ylabel="median queries MC-PRM / ORM (95% CI)")
        ax.set_title(f"vs Alg. 1, {STEP_TEXT[u]}" + (", m = 1" if m1 else "") + ": circles p0, squares alpha0;\n"
                     "hollow: current-policy rollouts; shade: r; dotted: 0.5", fontsize=9)
        ax.grid(alpha=0.25, which="both")
    n_seeds = int(np.unique(table["seed"]).size)
    title = (f"mc-prm: Algorithm 2 with a Monte-Carlo process verifier vs Algorithm 1, outcome queries counted; "
             f"planted k={config['k']}, $\\gamma$={config['gamma']:g}; dots: runs, lines: medians over {n_seeds} seeds")
    return plotting.save(fig, out_dir, "mc_prm", title)


def _num(v) -> float:
    """A number read back from ``summary.json`` (where ``nan`` and ``±inf`` are ``None``)."""
    return math.nan if v is None else float(v)


def _fits(config: dict) -> str | None:
    if config["p0"] <= 1.0 / config["k"] - 1e-12:
        return f"p0 must be at least 1/k = {1 / config['k']:.4g} (the uniform base), got {config['p0']}"
    return None


class McPrm(Experiment):
    name = "mc-prm"
    description = ("Q2: Algorithm 2 with a Monte-Carlo process verifier (r rollouts per label), all outcome queries "
                   "counted, vs Algorithm 1, for base models of different LQ and token-level LQ")
    claims = ("Q2",)
    settings = {
        **common(k=4, gamma=0.6, batch_size=1, max_steps=3000, check_every=10, n_boot=1000),
        "orm_max_steps": Int(20000, "Algorithm 1's iteration budget (with m = 1 an iteration makes at most 2 queries)",
                             low=1),
        "Ns": Ints([2, 4, 6, 8, 10], "response lengths", low=1, min_len=2, increasing=True),
        "rs": Ints([1, 4, 16], "rollouts per label", low=1, min_len=1, increasing=True),
        "rollouts": Choices(["base", "current"], "rollout policies of the labelling: base (q0), current (p_w)",
                            ROLLOUTS),
        "families": Choices(list(FAMILIES), "base families: p0 (per-token probability p0), alpha0 (q0(y*|x) = "
                            "alpha0)", FAMILIES),
        "orm_step_units": Choices(["response", "token"], "readings of Algorithm 1's step compared with: response "
                                  "(the paper's), token (Algorithm 2's)", ("response", "token")),
        "orm_m1": Bool(True, "also compare with Algorithm 1 with m = 1 (one fallback draw per iteration)"),
        "p0": Real(0.5, "p0 family: correct-token probability of q0", low=0.0, high=1.0, open_low=True,
                   open_high=True),
        "alpha0": Real(0.1, "alpha0 family: q0(y*|x)", low=0.0, high=1.0, open_low=True, open_high=True),
        "eps": Real(0.1, "target: exact error <= eps", low=0.0, high=1.0, open_low=True, open_high=True),
        "delta": Real(0.1, "Algorithm 2's m carries the factor ceil(ln(N/delta))", low=0.0, high=1.0,
                      open_low=True, open_high=True),
        "regime_factor": Real(1.0, "p0-family fits use the N with 1/Q >= regime_factor/eps", low=0.0,
                              open_low=True),
    }
    constraints = (divides("check_every", "max_steps"), divides("check_every", "orm_max_steps"), _fits)
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {"Ns": "2,4,6,8,10,12,14,16", "rs": "1,4,16,64", "max_steps": "40000",
                            "orm_max_steps": "400000"},
                       "longer responses, more rollouts, 64 seeds"),
        "quick": Profile(2, {"Ns": "2,3", "rs": "1,4", "max_steps": "200", "orm_max_steps": "1000", "n_boot": "100"}),
    }

    def sweeps(self, config):
        fams = [FAMILIES.index(f) for f in config["families"]]
        for u in config["orm_step_units"]:
            yield Sweep("orm" if u == "response" else "orm_tokenstep", make_run(config, "orm", unit=u),
                        {"N": config["Ns"], "family": fams, "r": [1], "m1": [0, 1] if config["orm_m1"] else [0]},
                        {"alg": "orm", "rollout": "none", "step_unit": u}, chunk_size=PER_POINT)
        for ro in config["rollouts"]:
            yield Sweep(f"mc_{ro}", make_run(config, "mc", ro),
                        {"N": config["Ns"], "family": fams, "r": config["rs"], "m1": [0]},
                        {"alg": "mc", "rollout": ro, "step_unit": "token"}, chunk_size=PER_POINT)

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir)

    def text(self, summary: dict) -> str:
        lines = [slopes_table(summary["slopes"])]
        for u, ratios in summary["ratios"].items():
            lines.append(f"median queries MC-PRM / {summary['comparators'][u]}, ratio [95% CI] per N "
                         f"(* : some run censored):")
            rows: dict[str, list[str]] = {}
            for rec in ratios.values():
                cell = (f"N={rec['N']}: {_num(rec['ratio']):.3g} [{_num(rec['ci'][0]):.3g}, {_num(rec['ci'][1]):.3g}]"
                        + ("*" if rec["mc_censored"] or rec["orm_censored"] else ""))
                rows.setdefault(f"  {rec['family']:6s} {rec['rollout']:7s} r={rec['r']:<3d}", []).append(cell)
            lines += [f"{key} " + "; ".join(cells) for key, cells in rows.items()]
            lines.append(f"MC-PRM beats it (CI below 1) at {len(summary['wins'][u])}/{len(ratios)} points: "
                         f"{', '.join(summary['wins'][u]) or 'nowhere'}")
        fl = summary.get("floor", {})
        if fl:
            low = min(fl, key=lambda n: _num(fl[n]["ratio"]))
            lines.append(f"restricted mean queries / floor (every learner): smallest {_num(fl[low]['ratio']):.3g} "
                         f"[{_num(fl[low]['ci'][0]):.3g}, {_num(fl[low]['ci'][1]):.3g}] at {low}; per series and N "
                         f"in summary.floor")
        lines += [f"censored runs: {summary['censored_runs']}/{summary['runs']}",
                  checks_line(summary["verdict"]), self.timing_line(summary)]
        return "\n".join(lines)
