"""``noisy-verifiers``: Algorithms 1 and 2 and on-policy policy gradient with verifiers
that accept a wrong response (prefix) with probability ``ρ₊`` and reject a correct one
with probability ``ρ₋`` (issue 14, question Q1; the verifiers and the noisy algorithms
are in :mod:`lpg.noisy`, whose docstring states the noise model and the reading of
Algorithm 2 taken: a false reject rejects that candidate, a false accept sends the walk
down a wrong prefix, the update is on the accepted tokens).

Question. How do the query counts of Algorithms 1 and 2 and the final likelihood of ``y*``
depend on ``ρ₊``, ``ρ₋`` and ``N``? At what noise does the process reward's linear-in-``N``
advantage disappear? Where does on-policy PG converge to a wrong response, and how often?

Set-up. The planted task (:func:`lpg.make_planted`: margin exactly ``γ``, ``S`` one-hot
contexts, so likelihoods are exact per context), ``k = 4``, ``γ = ½`` (``S = 5``).

* Algorithms (parts ``alg1``, ``alg2``): from the uniform base, reward queries until
  ``p_w(y*|x) ≥ 1 − ε`` on every context (:func:`lpg.hitting.likelihood_at_least`;
  censored at ``max_steps``), on the exact event paths of :class:`lpg.noisy.NoisyBestOfM`
  (``m = min(⌈1/Q_{q0}(ε)⌉, k^N) = k^N``) and :class:`lpg.noisy.NoisyTokenBestOfM`
  (``m = min(⌈1/Q^TL⌉, k)·⌈ln(N/δ)⌉``, as in ``scaling-n``), over ``N`` × ``ρ₊`` × ``ρ₋``.
* PG (part ``pg``): on-policy PG with the 0/1 noisy outcome reward
  (:class:`lpg.noisy.NoisyOutcome`), no baseline, constant step, from a planted base
  with ``q0(y*|x) = pg_alpha`` on every context, over ``ρ₊`` × ``ρ₋``. At the end each
  (seed, context) is *at y** when one response has mass ``> ½`` and it is ``y*``, *wrong*
  when one response has mass ``> ½`` and it is not ``y*`` (the greedy response then is
  that response: each of its tokens has conditional probability ``> ½``), *undecided*
  otherwise.

Predictions (derived before the default run; the acceptance tests are the ``slopes``
records with a range and the ``verdict`` checks).

1. Algorithm 1, ``ρ₊ = 0``: a fallback draw is accepted with probability ``ρ(1 − ρ₋)``,
   ``ρ = ½q0(y*) + ½k^-N``, so every success costs ``1/(1 − ρ₋)`` times as many draws and
   nothing else changes: ``ln Q`` is still linear in ``N`` with slope ``ln k``
   (acceptance: within 15%, where ``k^N ≥ 10/ε``). ``ρ₊ > 0``: the fallback stops after
   ``≈ 1/ρ₊`` draws on a response that is ``y*`` with probability ``≈ ρ(1 − ρ₋)/ρ₊``, and
   updates on the others (uniform draws) pull the policy back towards uniform; once
   ``k^N ≫ 1/ρ₊`` the target is out of reach (censored runs): reported.
2. Algorithm 2, ``ρ₊ = 0``: a position is passed when one of ``m`` candidates is accepted,
   each with probability ``a_i = ρ_i(1 − ρ₋)``; a walk costs ``Σ_i E[min(G_i, m)] ≈ N·k/(1 − ρ₋)``
   queries (``ρ_i = 1/k`` from the uniform base) and reaches the end with probability
   ``≈ Π_i (1 − (1 − a_i)^m)``, ``1 − N(δ/N)^{1−ρ₋}`` or more. A false reject of a correct
   on-policy sample (probability ``ρ₋`` per iteration once ``p_w(y*) ≈ 1``) adds a walk,
   so the ``1/(γ²ε)`` term of C9 becomes ``∝ N·ρ₋/(1 − ρ₋)`` too. Both terms stay linear
   in ``N``: the log-log slope of queries vs ``N`` is at most linear for every ``ρ₋ < 1``
   (acceptance: estimate in ``[0, 1.3]``), and the count rises by at least ``1/(1 − ρ₋)``
   (reported, ``alg2_vs_rho_minus``). The reading matters: had a false reject ended the
   walk, a walk would reach the end with probability ``(1 − ρ₋)^N`` and the count would
   grow like ``(1 − ρ₋)^{-N}``, exponential once ``N·ρ₋ ≳ 1``.
3. Algorithm 2, ``ρ₊ > 0``: an accepted token at an on-``y*`` position is a false accept
   with probability ``f = (k − 1)ρ₊/((1 − ρ₋) + (k − 1)ρ₊)`` (uniform base); after it the
   walk is off ``y*`` for good and goes on with probability ``1 − (1 − ρ₊)^m`` per
   position, so a walk verifies ``≈ (1 − f)/f`` correct tokens and then updates wrong
   ones (uniform draws of the fallback, which pull towards uniform). The linear-in-``N``
   advantage is predicted to fade where the wrong tokens outnumber the right ones,
   ``N ≳ 1/f`` (``f = 0.057, 0.13, 0.23`` at ``ρ₊ = 0.02, 0.05, 0.1``, ``ρ₋ = 0``): reported,
   with each noise level's slope and censoring. Check ``prediction 3`` (written after a
   first default run with ``ρ₊ ∈ {0, 0.1}`` only, judged on every ``ρ₊ > 0`` of the grid,
   so on ``0.02`` and ``0.05`` out of sample): at each ``ρ₊ > 0``, Algorithm 2 reaches the
   target (Kaplan–Meier median defined) at every ``N ≤ 1/(2f)`` of the grid and does not
   (more than half of the runs censored) at every ``N ≥ 2/f``; between the two it may do
   either. The likelihood of ``y*`` at the end of the budget is reported for every run.
4. PG, 0/1 noisy ORM, no baseline: ``E[r ∇log p(y)] = Σ_y p(y)·P(accept|y)·∇log p(y) =
   (1 − ρ₋ − ρ₊)·p(y*)∇log p(y*) + ρ₊·E[∇log p] = (1 − ρ₋ − ρ₊)·p(y*)∇log p(y*)``: the
   exact update scaled by ``s = 1 − ρ₋ − ρ₊`` plus zero-mean noise. (a) ``ρ₊ = 0``: only
   ``y*`` is ever updated, and a step on ``∇log p(y*)`` raises ``p(y*)`` on this task, so
   PG never converges to a wrong response (acceptance: 0 wrong (seed, context) pairs over
   the ``ρ₊ = 0`` runs). (b) With a constant step the mean dynamics are the exact ones
   slowed by ``1/s``: at ``ρ₊ = 0`` the steps until the mean likelihood of ``y*`` reaches
   ``½`` grow like ``1/(1 − ρ₋)`` (acceptance: log-log slope in ``[0.75, 1.3]``). (c)
   ``ρ₊ > 0``: accepted wrong samples are reinforced (their mean is zero, but a softmax
   reinforced by its own samples drifts to a corner), so some runs converge to wrong
   responses, more often as ``ρ₊`` grows; at ``s = 0`` there is no drift towards ``y*`` at
   all. Fractions reported per noise level with 95% intervals over seeds.

Acceptance tests are the ``slopes`` records with an ``accept`` range and the ``verdict``
checks; everything else is reported.

How the defaults were chosen. PG's constant step, batch and length were chosen in a
trial on seeds 100–107 (not the default seeds) so that the exact-verifier runs converge
well inside the budget; the algorithms' budget (``max_steps``) and grids for the run time.
A first default run had ``ρ₊ ∈ {0, 0.1}`` (and ``ρ₋ ∈ {0, 0.2, 0.5}``) for the algorithms;
``ρ₊ = 0.02, 0.05`` were then added to locate where Algorithm 2's advantage goes, and
prediction 3's check was written. A censored run is censored by the budget: the likelihood
it reached is reported, and a run close to ``1 − ε`` at the end may be slow rather than
stuck. Run time at the CPU default: see the report's
timing line (the budget is 3 minutes on 2 cores).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import plotting
from lpg.analysis import censored_median, checks_line, fit_record, slopes_table
from lpg.hitting import likelihood_at_least, run_until
from lpg.noisy import NoisyBestOfM, NoisyOutcome, NoisyProcess, NoisyTokenBestOfM
from lpg.problem import base_quantiles, planted_problem
from lpg.results import summarise
from lpg.spec import Experiment, Int, Ints, PER_POINT, Profile, Real, Reals, Sweep, common, divides
from lpg.tasks import planted_alpha_base
from lpg.theory import orm_log_m, prm_log_m

LN10 = math.log(10.0)
ALGS = ("alg1", "alg2")
LABEL = {"alg1": "Alg. 1 (noisy ORM)", "alg2": "Alg. 2 (noisy PRM)"}
LINEAR_MAX = 1.3
"""Algorithm 2's log-log slope in ``N`` counted as still linear (prediction 2)."""


def key_of(rp: float, rm: float) -> str:
    return f"rp={rp:g},rm={rm:g}"


def make_alg_run(config: dict, alg_name: str):
    """``run(key, N, rho_plus, rho_minus)``: one hitting-time run of a noisy algorithm from the
    uniform base (the task padded to ``max(Ns)``, ``N`` traced)."""
    k, pad = config["k"], max(config["Ns"])
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=pad, gamma=config["gamma"])
    target = likelihood_at_least(config["eps"])

    def run(key, N, rho_plus, rho_minus):
        problem = planted_problem(task, key=jax.random.PRNGKey(0), length=N)
        log_q, log_tl = base_quantiles(problem, config["eps"])
        if alg_name == "alg1":
            alg = NoisyBestOfM(NoisyOutcome(rho_plus, rho_minus), batch_size=config["batch_size"])
            log_m = orm_log_m(log_q, N, k)
        else:
            alg = NoisyTokenBestOfM(NoisyProcess(rho_plus, rho_minus), batch_size=config["batch_size"])
            log_m = prm_log_m(log_tl, k, N, config["delta"])
        hyper = lpg.Hyper(jnp.float32(1.0), log_m.astype(jnp.float32), jnp.float32(jnp.inf))
        hit = run_until(alg, problem, hyper, key, max_steps=config["max_steps"], target=target,
                        check_every=config["check_every"])
        final = lpg.evaluate(problem, hit.final_w).track_log_lik
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_m": log_m,
                "final_min_log_lik": jnp.min(final), "final_mean_lik": jnp.mean(jnp.exp(final))}

    return run


def make_pg_run(config: dict):
    """``run(key, rho_plus, rho_minus)``: on-policy PG with the noisy 0/1 outcome reward from
    the planted base of likelihood ``pg_alpha``; the mean likelihood of ``y*`` over the
    contexts at the log points and, per context at the end, the likelihood of ``y*`` and
    the greedy response's mass and whether it is ``y*``."""
    N, k = config["pg_N"], config["k"]
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=N, gamma=config["gamma"])
    w0 = planted_alpha_base(task, config["pg_alpha"])
    problem = planted_problem(task, key=jax.random.PRNGKey(0), base=w0)
    steps, every = config["pg_steps"], config["pg_log_every"]

    def run(key, rho_plus, rho_minus):
        alg = lpg.PolicyGradient(NoisyOutcome(rho_plus, rho_minus), batch_size=config["pg_batch"],
                                 optimizer="constant")
        res = lpg.train(alg, problem, lpg.hyper(lr=config["pg_lr"]), key, steps=steps, log_every=every)
        w, fmap = res.state.w, problem.fmap
        greedy = jax.vmap(lambda x: fmap.greedy(w, x, N))(problem.track_x)
        mass = jax.vmap(lambda x, y: lpg.policy.log_prob(fmap, w, x, y))(problem.track_x, greedy)
        mean_lik = jnp.mean(jnp.exp(res.curves.track_log_lik), axis=-1)
        return {"final_log_lik": res.curves.track_log_lik[-1], "greedy_log_mass": mass,
                "greedy_is_star": jnp.all(greedy == problem.track_y, axis=-1),
                "curves": {"pg": {"step": res.curves.step, "mean_lik": mean_lik}}}

    return run


def _outcomes(table, config: dict) -> dict:
    """Per noise level: ``(S_seeds, contexts)`` arrays of the PG end states."""
    rows = table.where(part="pg", step=-1)
    out = {}
    for rp in config["pg_rho_plus"]:
        for rm in config["pg_rho_minus"]:
            sel = rows.where(rho_plus=np.float32(rp), rho_minus=np.float32(rm))
            decided = sel["greedy_log_mass"].astype(np.float64) > math.log(0.5)
            star = sel["greedy_is_star"].astype(bool)
            out[(rp, rm)] = {"star": decided & star, "wrong": decided & ~star, "undecided": ~decided,
                             "lik": np.exp(sel["final_log_lik"].astype(np.float64))}
    return out


def _fraction(mask: np.ndarray, n_boot: int) -> dict:
    """A pooled fraction of (seed, context) pairs with its 95% interval over seeds."""
    per_seed = mask.mean(axis=1)
    s = summarise(per_seed, n_boot=n_boot)
    return {"fraction": s["mean"], "ci95": s["ci95"], "count": int(mask.sum()), "of": int(mask.size),
            "per_seed": mask.sum(axis=1).tolist()}


def steps_to_half(table, rp: float, rm: float) -> tuple[np.ndarray, np.ndarray]:
    """Per PG run: the first logged step with mean likelihood of ``y*`` ``≥ ½`` and whether
    none was (censored at the last step)."""
    sel = table.where(part="pg", rho_plus=np.float32(rp), rho_minus=np.float32(rm))
    lik, step = sel.by_run("mean_lik"), sel.by_run("step")
    above = lik >= 0.5
    first = np.where(above.any(axis=1), np.argmax(above, axis=1), lik.shape[1] - 1)
    return step[np.arange(len(first)), first].astype(np.float64), ~above.any(axis=1)


def summary_of(table, config: dict) -> dict:
    k, Ns, n_boot = config["k"], np.asarray(config["Ns"], float), config["n_boot"]
    slopes, algs, linear = {}, {}, {}
    for alg in ALGS:
        algs[alg] = {}
        for rp in config["rho_plus"]:
            for rm in config["rho_minus"]:
                sel = table.where(part=alg, rho_plus=np.float32(rp), rho_minus=np.float32(rm))
                x, lq, cens = sel["N"].astype(float), sel["log_queries"].astype(np.float64), ~sel["hit"]
                med = [censored_median(lq[x == N], cens[x == N]) for N in Ns]
                lik = sel["final_mean_lik"].astype(np.float64)
                algs[alg][key_of(rp, rm)] = {"N": Ns.tolist(), "median_log10_queries": [m / LN10 for m in med],
                                             "censored": [int(cens[x == N].sum()) for N in Ns],
                                             "runs": [int((x == N).sum()) for N in Ns],
                                             "final_lik": [summarise(lik[x == N], n_boot=n_boot) for N in Ns]}
                name = f"{alg}_vs_N_{key_of(rp, rm)}"
                if alg == "alg1":
                    regime = [float(Ns[k ** Ns >= 10.0 / config["eps"]].min(initial=Ns.max())), float(Ns.max())]
                    exact = rp == 0.0
                    slopes[name] = fit_record(x, lq, cens, theory=math.log(k), log_x=False, log_y=False,
                                              accept=(0.85 * math.log(k), 1.15 * math.log(k)) if exact else None,
                                              regime=regime, n_boot=n_boot, claim="Q1",
                                              note="ln(queries) vs N; prediction 1: ln k at rho_plus = 0")
                else:
                    exact = rp == 0.0
                    slopes[name] = fit_record(x, np.exp(lq), cens, theory=1.0, log_x=True, log_y=True,
                                              accept=(0.0, LINEAR_MAX) if exact else None, n_boot=n_boot,
                                              claim="Q1", note="log-log slope of queries vs N; prediction 2: "
                                                               f"at most linear (<= {LINEAR_MAX}) at rho_plus = 0")
                    rec = slopes[name]
                    linear[key_of(rp, rm)] = bool(rec["n_unestimable"] == 0 and math.isfinite(rec["estimate"])
                                                  and rec["ci"][1] is not None and rec["ci"][1] <= LINEAR_MAX)
    # Algorithm 2's count against 1/(1 - rho_minus) at rho_plus = 0, at the largest N
    sel = table.where(part="alg2", N=int(Ns.max()), rho_plus=np.float32(0.0))
    if len(sel):
        slopes["alg2_vs_rho_minus"] = fit_record(
            1.0 / (1.0 - sel["rho_minus"].astype(float)), np.exp(sel["log_queries"].astype(np.float64)),
            ~sel["hit"], theory=1.0, n_boot=n_boot, claim="Q1",
            note=f"log-log slope of Alg. 2's queries vs 1/(1 - rho_minus) at N = {int(Ns.max())}, rho_plus = 0; "
                 "prediction 2: at least 1 (walk cost), more from false rejects of correct on-policy samples")
    advantage = {}
    for rp in config["rho_plus"]:
        for rm in config["rho_minus"]:
            a1 = algs["alg1"][key_of(rp, rm)]["median_log10_queries"][-1]
            a2 = algs["alg2"][key_of(rp, rm)]["median_log10_queries"][-1]
            advantage[key_of(rp, rm)] = {"log10_alg1_over_alg2_at_max_N": a1 - a2,
                                         "alg2_linear": linear[key_of(rp, rm)]}

    # PG
    pg, outcomes = {}, _outcomes(table, config)
    for (rp, rm), o in outcomes.items():
        pg[key_of(rp, rm)] = {"signal": 1.0 - rp - rm, "final_lik": summarise(o["lik"].mean(axis=1), n_boot=n_boot),
                              **{c: _fraction(o[c], n_boot) for c in ("star", "wrong", "undecided")}}
    exact_pg = [o for (rp, _), o in outcomes.items() if rp == 0.0]
    wrong_at_0 = int(sum(o["wrong"].sum() for o in exact_pg))
    verdict = {}
    if exact_pg:
        verdict["PG never converges to a wrong response at rho_plus = 0 (prediction 4a)"] = (
            "confirmed" if wrong_at_0 == 0 else f"not confirmed ({wrong_at_0} wrong)")
    rms = [rm for rm in config["pg_rho_minus"] if 0.0 in config["pg_rho_plus"]]
    if len(rms) >= 2:
        xs, ts, cs = [], [], []
        for rm in rms:
            t, c = steps_to_half(table, 0.0, rm)
            xs.append(np.full(t.shape, 1.0 / (1.0 - rm)))
            ts.append(np.maximum(t, 1.0))
            cs.append(c)
        slopes["pg_steps_to_half_vs_inv_signal"] = fit_record(
            np.concatenate(xs), np.concatenate(ts), np.concatenate(cs), theory=1.0, accept=(0.75, 1.3), n_boot=n_boot,
            claim="Q1", note="log-log slope of PG steps until the mean likelihood of y* reaches 1/2 vs "
                             "1/(1 - rho_minus) at rho_plus = 0; prediction 4b: 1 (time rescaled by the signal)")
    for name, rec in slopes.items():
        if "accept" in rec:
            verdict[name] = rec["verdict"]
    check3 = prediction3(algs["alg2"], config)
    if check3["judged"]:
        verdict["prediction 3: Alg. 2 reaches the target for N <= 1/(2f), not for N >= 2/f"] = (
            "confirmed" if check3["ok"] else f"not confirmed ({'; '.join(check3['failures'])})")
    lost = sorted(k_ for k_, ok in linear.items() if not ok)
    return {
        "experiment": "noisy-verifiers", "claims": ["Q1"], "eps": config["eps"], "k": k,
        "algorithms": algs, "advantage": advantage, "pg": pg, "slopes": slopes, "verdict": verdict,
        "prediction3": check3,
        "answer": {"alg2_linear_in_N": sorted(k_ for k_, ok in linear.items() if ok), "alg2_not_linear": lost,
                   "largest_N_reached": {alg: {k_: reached(row) for k_, row in algs[alg].items()} for alg in ALGS},
                   "pg_wrong_fraction": {k_: v["wrong"]["fraction"] for k_, v in pg.items()}},
        "units": {"median_log10_queries": "log10 of the Kaplan-Meier median of reward queries until likelihood "
                                          ">= 1 - eps on every context (nan: more than half censored)",
                  "pg": "fractions of (seed, context) pairs at the end of PG, 95% interval over seeds; final_lik: "
                        "mean over contexts of p_w(y*|x), mean over seeds"},
    }


def false_accept_share(config: dict, rp: float, rm: float) -> float:
    """``f``: the probability that a token Algorithm 2 accepts at a position on ``y*`` is
    wrong, from the uniform base (``ρ_i = 1/k``; prediction 3)."""
    k = config["k"]
    return (k - 1) * rp / ((1.0 - rm) + (k - 1) * rp)


def reached(row: dict) -> float:
    """The largest ``N`` whose Kaplan–Meier median is defined (0: none)."""
    ok = [n for n, m in zip(row["N"], row["median_log10_queries"]) if m is not None and math.isfinite(m)]
    return float(max(ok)) if ok else 0.0


def prediction3(alg2: dict, config: dict) -> dict:
    """Prediction 3's check at every ``ρ₊ > 0``: the target is reached at ``N ≤ 1/(2f)`` and
    not at ``N ≥ 2/f`` (module docstring)."""
    failures, judged = [], 0
    for rp in config["rho_plus"]:
        for rm in config["rho_minus"]:
            if rp == 0.0:
                continue
            f = false_accept_share(config, rp, rm)
            row = alg2[key_of(rp, rm)]
            for n, m in zip(row["N"], row["median_log10_queries"]):
                estimable = m is not None and math.isfinite(m)
                if n <= 1.0 / (2.0 * f) or n >= 2.0 / f:
                    judged += 1
                    want = n <= 1.0 / (2.0 * f)
                    if estimable != want:
                        failures.append(f"{key_of(rp, rm)}, N={int(n)}, 1/f={1.0 / f:.3g}: "
                                        f"{'censored' if want else 'reached'}")
    return {"judged": judged, "ok": not failures, "failures": failures}


def _num(v) -> str:
    """``v`` to 2 decimals, ``n/a`` for ``nan`` (``None`` once read back from JSON)."""
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.2f}"


def _fmt_frac(f: dict) -> str:
    lo, hi = f["ci95"]
    return f"{f['count']}/{f['of']} ({100 * f['fraction']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}])"


def text(summary: dict) -> str:
    lines = [slopes_table(summary["slopes"]), "", "median log10 queries to p(y*) >= 1 - eps at each N (censored/runs; "
             "p: mean likelihood of y* at the hit or the end of the budget):"]
    for alg, table in summary["algorithms"].items():
        for key, row in table.items():
            cells = ", ".join(f"N={int(n)}: {_num(m)} ({c}/{r}; p {_num(fl['mean'])})" for n, m, c, r, fl in
                              zip(row["N"], row["median_log10_queries"], row["censored"], row["runs"],
                                  row["final_lik"]))
            lines.append(f"  {alg} {key}: {cells}")
    lines += ["", "PG with the noisy outcome reward (seed x context pairs, 95% interval over seeds):"]
    for key, row in summary["pg"].items():
        fl = row["final_lik"]
        lines.append(f"  {key} (signal {row['signal']:+.2f}): final p(y*) {_num(fl['mean'])} "
                     f"[{_num(fl['ci95'][0])}, {_num(fl['ci95'][1])}]; at y* {_fmt_frac(row['star'])}; "
                     f"wrong {_fmt_frac(row['wrong'])}; undecided {_fmt_frac(row['undecided'])}")
    ans = summary["answer"]
    lines += ["", f"Alg. 2 still linear in N at: {', '.join(ans['alg2_linear_in_N']) or 'none'}; "
                  f"not at: {', '.join(ans['alg2_not_linear']) or 'none'}",
              checks_line(summary["verdict"])]
    return "\n".join(lines)


def figure(table, config: dict, summary: dict, out_dir: Path) -> list[Path]:
    fig, ax = plotting.figure(2, 2, width=5.2, height=4.0)
    ax = np.ravel(ax)
    rps, rms = config["rho_plus"], config["rho_minus"]
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    styles = ["-", "--", ":", "-."]
    for panel, alg in enumerate(ALGS):
        for i, rm in enumerate(rms):
            for j, rp in enumerate(rps):
                row = summary["algorithms"][alg][key_of(rp, rm)]
                ax[panel].plot(row["N"], row["median_log10_queries"], marker="o", ms=3,
                               color=cmap(i / max(1, len(rms) - 1) * 0.85), ls=styles[j % 4],
                               label=f"ρ₋={rm:g}, ρ₊={rp:g}")
        ax[panel].set(title=f"{LABEL[alg]}: median queries to p(y*) ≥ 1−ε", xlabel="N",
                      ylabel="log10 reward queries (median; gap: > half censored)")
        if alg == "alg2":
            ax[panel].set_xscale("log", base=2)
        ax[panel].legend(fontsize=6, ncol=2)
    for i, rm in enumerate(config["pg_rho_minus"]):
        for j, rp in enumerate(config["pg_rho_plus"]):
            sel = table.where(part="pg", rho_plus=np.float32(rp), rho_minus=np.float32(rm))
            if len(sel):
                lik = sel.by_run("mean_lik")
                ax[2].plot(sel.by_run("step")[0], lik.mean(axis=0), ls=styles[j % 4],
                           color=cmap(i / max(1, len(config["pg_rho_minus"]) - 1) * 0.85),
                           label=f"ρ₋={rm:g}, ρ₊={rp:g}")
    ax[2].set(title=f"PG, noisy 0/1 ORM (N={config['pg_N']}): mean p(y*) over contexts, seeds",
              xlabel="PG step", ylabel="p_w(y*|x)")
    ax[2].legend(fontsize=5.5, ncol=2)
    for i, rm in enumerate(config["pg_rho_minus"]):
        rows = [summary["pg"][key_of(rp, rm)] for rp in config["pg_rho_plus"]]
        color = cmap(i / max(1, len(config["pg_rho_minus"]) - 1) * 0.85)
        for what, ls in (("wrong", "-"), ("star", ":")):
            f = np.array([r[what]["fraction"] for r in rows])
            ci = np.array([r[what]["ci95"] for r in rows])
            ax[3].errorbar(config["pg_rho_plus"], f, yerr=[f - ci[:, 0], ci[:, 1] - f], color=color, ls=ls,
                           marker="o", ms=3, capsize=2,
                           label=f"ρ₋={rm:g}: {'wrong' if what == 'wrong' else 'at y*'}")
    ax[3].set(title="PG end: mass > 1/2 on a wrong response (solid), on y* (dotted)", xlabel="ρ₊",
              ylabel="fraction of seed × context pairs", ylim=(-0.03, 1.03))
    ax[3].legend(fontsize=6, ncol=2)
    for a in ax:
        a.title.set_fontsize(9)
    title = (f"noisy-verifiers: planted task k={config['k']}, γ={config['gamma']:g}, ε={config['eps']:g}; "
             f"{int(np.unique(table['seed']).size)} seeds")
    return plotting.save(fig, out_dir, "noisy_verifiers", title)


class NoisyVerifiers(Experiment):
    name = "noisy-verifiers"
    description = ("Q1: noisy outcome/process verifiers (false accept rho+, false reject rho-): Algorithms 1 and 2 "
                   "query counts vs N, and where on-policy PG converges to a wrong response")
    claims = ("Q1",)
    settings = {
        **common(k=4, gamma=0.5, batch_size=4, max_steps=600, check_every=10, task_seed=0, n_boot=1000,
                 chunk_size=0),
        "Ns": Ints([2, 4, 8, 16], "response lengths of the algorithms' runs", low=1, min_len=2, increasing=True),
        "rho_plus": Reals([0.0, 0.02, 0.05, 0.1], "false-accept probabilities of the algorithms' runs", low=0.0,
                          high=1.0, distinct=True),
        "rho_minus": Reals([0.0, 0.5], "false-reject probabilities of the algorithms' runs", low=0.0, high=1.0,
                           open_high=True, distinct=True),
        "eps": Real(0.1, "target: likelihood >= 1 - eps on every context", low=0.0, high=1.0, open_low=True,
                    open_high=True),
        "delta": Real(0.1, "Algorithm 2's m carries the factor ceil(ln(N/delta))", low=0.0, high=1.0, open_low=True,
                      open_high=True),
        "pg_N": Int(4, "response length of the PG runs", low=1),
        "pg_alpha": Real(0.01, "base likelihood q0(y*|x) of every context in the PG runs", low=0.0, high=1.0,
                         open_low=True, open_high=True),
        "pg_rho_plus": Reals([0.0, 0.1, 0.25, 0.5], "false-accept probabilities of the PG runs", low=0.0, high=1.0,
                             distinct=True),
        "pg_rho_minus": Reals([0.0, 0.25, 0.5, 0.75], "false-reject probabilities of the PG runs", low=0.0, high=1.0,
                              open_high=True, distinct=True),
        "pg_steps": Int(1000, "PG steps", low=1),
        "pg_log_every": Int(10, "PG steps between log points", low=1),
        "pg_batch": Int(16, "PG batch size", low=1),
        "pg_lr": Real(2.0, "PG constant step size", low=0.0, open_low=True),
    }
    constraints = (divides("check_every", "max_steps"), divides("pg_log_every", "pg_steps"),
                   lambda c: None if lpg.features.max_planted_contexts(c["k"], c["gamma"]) >= 1
                   else f"gamma must be at most sqrt(k/(k-1)) for k={c['k']}, got {c['gamma']!r}")
    default_seeds = 16
    profiles = {
        "quick": Profile(2, {"Ns": "2,4", "rho_plus": "0,0.2", "rho_minus": "0,0.5", "max_steps": "300",
                             "pg_rho_plus": "0,0.5", "pg_rho_minus": "0,0.5", "pg_steps": "100", "n_boot": "200"}),
        "gpu": Profile(64, {"Ns": "2,4,8,16,32,64", "rho_plus": "0,0.02,0.05,0.1,0.2",
                            "rho_minus": "0,0.1,0.2,0.3,0.5,0.7", "max_steps": "10000",
                            "pg_rho_plus": "0,0.05,0.1,0.2,0.3,0.4,0.5", "pg_steps": "3000"},
                       "64 seeds, N to 64, finer noise grids"),
    }

    def sweeps(self, config):
        grid = {"N": config["Ns"], "rho_plus": config["rho_plus"], "rho_minus": config["rho_minus"]}
        for alg in ALGS:
            yield Sweep(alg, make_alg_run(config, alg), grid, {"alg": alg}, chunk_size=PER_POINT)
        yield Sweep("pg", make_pg_run(config), {"rho_plus": config["pg_rho_plus"],
                                                "rho_minus": config["pg_rho_minus"]}, {"alg": "pg"})

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir)

    def text(self, summary):
        return text(summary) + "\n" + self.timing_line(summary)
