"""``scaling-n``: outcome vs process rewards as the response length grows (claims C5 vs
C9, PAPER.md §4) — the headline scaling figure.

Measured: reward queries until the policy's likelihood of ``y*`` is ``≥ 1 − ε`` on every
context (:func:`lpg.hitting.likelihood_at_least`), for

* Algorithm 1 (:class:`lpg.BestOfM`, outcome reward), ``m = min(⌈1/Q_{q0}(ε)⌉, k^N)``
  (``log m = N log k`` for the uniform base: ``32^128`` is carried in log space by the
  exact event path);
* Algorithm 2 (:class:`lpg.TokenBestOfM`, process reward),
  ``m = min(⌈1/Q^TL_{q0}(ε)⌉, k)·⌈ln(N/δ)⌉`` draws per position;

for ``N`` from 1 to 128 at ``k = 4`` and ``k = 32``, from two base models: the uniform
policy (``α = Q_{q0}(ε) = k^-N``, ``Q^TL = 1/k``) and a supervised pre-trained one.

Theory. C5: ``Q = Õ((m + 1/ε)/γ²)``, so from the uniform base ``ln Q ≈ N ln k`` — a
straight line in ``N`` of slope ``ln k`` (acceptance: within 15%). C9:
``Q = Õ(N·min(1/Q^TL, k)/γ² + 1/(γ²ε))`` — affine in ``N`` up to the log factors the
``Õ`` hides (acceptance below). The lower bound C6 (any ORM method needs
``Ω̃(1/(Q_{q0}(ε)γ²))`` queries) is drawn, without a fitted constant, under the ORM series.

Two readings of the adaptive step, for both algorithms (``orm_step_units``,
``prm_step_units``; PAPER.md §3 leaves open which gradient it follows): ``response`` (the
paper's, the defaults' first), one step on the accepted response's gradient (Algorithm 2:
on the summed gradient of its verified prefix), and ``token``, one adaptive step per
(verified) token in order (``step_unit`` of :class:`lpg.BestOfM` and
:class:`lpg.TokenBestOfM`). Each claim's test is the same under both, and each record
names its reading (``reading``); a series keeps its plain name under its algorithm's own
default reading (:data:`DEFAULT_UNIT`: Algorithm 1 per response, Algorithm 2 per token)
and is ``orm_token_*`` / ``prm_response_*`` under the other. A series confirmed under one
reading only is ``conditional (on …)`` it (:func:`lpg.analysis.mark_conditional`), and
``summary.verdict`` states C5 and C9 under each reading and overall
(:func:`lpg.analysis.claim_under_readings`: ``confirmed`` when both pass, ``conditional
(on …)`` when one does). Algorithm 1's per-token reading costs more per iteration (``N``
sequential steps), so it runs at the ``N`` of ``Ns`` also in ``orm_token_Ns`` (default:
``N ≤ 32``): in C5's regimes of the four series (``k = 4``, uniform base: ``N ≥ 5``;
``k = 32``, uniform: ``N ≥ 2``; pre-trained: ``N ≥ 16`` and ``N ≥ 4`` at the defaults)
that leaves 5, 7, 4 and 6 points under the response-level reading and 3, 5, 2 and 4 under
the per-token one.

Why the planted task (:func:`lpg.make_planted`) and not the teacher: its margin is
exactly ``γ`` at every ``N`` (the teacher's margin, and with it the ``1/γ²`` factor,
changes with ``N`` and with the draw of ``A, B``), and its contexts are few and uniform,
so the tracked likelihoods are the exact per-sample quantity, not an estimate. Along
``y*`` every position of a planted task has the same next-token law, so supervised
pre-training with the token-averaged loss (the authors' recipe: Adagrad, lr 0.1) gives
a per-token likelihood ``p0`` of ``y*`` that does not depend on ``N``: the pre-trained
base has ``α = p0^N`` — better than uniform, still exponentially small in ``N``.
Its theory slope for Algorithm 1 is ``d ln(1/Q_{q0}(ε))/dN = ln(1/p0)``, read off the
base model itself.

Regimes, fixed from the claims' constants and the base model before any data.
Algorithm 1: the ``N`` where the claim's ``m`` term dominates its ``1/ε`` term,
``1/Q_{q0}(ε) ≥ 10/ε`` (for ``k = 4, ε = 0.01``: ``N ≥ 5``). Algorithm 2: the ``N``
where C9's ``N``-term is at least its ``1/ε`` term, ``N·m0 ≥ 1/ε`` with
``m0 = min(1/Q^TL, k)`` of the base; there is no fallback: with fewer than 4 such ``N``
(with a defined median) C9's test is ``not estimable`` for that series. At the defaults
(``ε = 0.01``) that is ``N ≥ 25`` (``k = 4``) and ``N ≥ 3.2`` (``k = 32``) from the
uniform base, ``N ≥ 1/(100·Q^TL)`` (about 57 and 13.5) from the pre-trained one. This
regime is known before any run (:func:`c9_m0`), so Algorithm 2 also runs at
``prm_extra_Ns`` (80, 96, 112) at a ``k`` where it holds fewer than 4 of ``Ns``
(:func:`prm_Ns`): at the defaults ``k = 4``, where the powers of two give 3 and 2 and
the extras make 6 and 5; ``k = 32`` has 6 and 4 (``N`` = 4…128, 16…128) without them.
Below the regime the bound is flat in ``N`` and a log-log slope measures the mix of the
two terms, not the ``N``-exponent.

C9's test (Algorithm 2), stated before the data of this version. Over the regime's
``N``, fit the Kaplan–Meier median queries by ``a + b·N + c·N²`` (least squares) and
take the share of the fitted rise over the regime ``[N_lo, N_hi]`` that the ``N²`` term
makes, ``s = c·(N_lo + N_hi)/(b + c·(N_lo + N_hi))``
(:func:`lpg.analysis.curvature_fit`): 0 for ``a + b·N``, 1 for ``a + c·N²``, above 1
when the linear term is negative, below 0 for concave growth; it does not depend on
``a`` or on the scale of ``Q``. Its 95% interval is the percentile bootstrap over seeds
(runs resampled within each ``N``; a draw whose fitted cost does not rise over the
regime counts as ``s = +∞``). The ``Õ``: Algorithm 2's ``m`` carries ``⌈ln(N/δ)⌉``; a
cost that paid this factor in full, ``a + b·N·ln(N/δ)``, has a share ``s_log`` (the same
fit on that exact curve at the regime's ``N``; it depends on the ``N`` and ``δ`` only:
0.13–0.18 over the default regimes, 0.18–0.21 over the ``quick`` profile's). C9 is
**confirmed** when the whole interval is at most ``s_log + 0.1``, **not confirmed**
otherwise. The margin 0.1 is about what one further factor ``N^0.1`` adds (``N^1.1``
alone has a share 0.10–0.13 over these regimes), while ``N^1.3`` lies 0.17–0.22 above
``s_log`` (computed from the curves at the default, ``quick`` and ``gpu`` regimes): a
cost growing like ``N^1.3`` has its estimate above the bound and fails whatever the
noise; a linear cost, or one with the log factor, passes when the interval is narrower
than the margin. Sub-linear growth is within C9's upper bound and passes. The power is
shown on synthetic data in ``tests/test_analysis.py``. The log-log slope over the
regime (``slopes.prm_*``, the previous version's test) and over every ``N``
(``slopes.prm_*_all_N``) are reported without an acceptance range.

Algorithm 2, what was decided and why (PAPER.md marks it reconstructed).

* ``m``'s ``ln(N/δ)`` is the log factor C9's ``Õ`` hides: with the paper's
  ``m = min(1/Q^TL, k)`` alone a walk from the uniform base passes a position with
  probability ``1 − (1 − 1/k)^k ≈ 0.63``, so it ends after ~1.6 positions whatever
  ``N``; positions beyond the first few are then learnt only through the on-policy
  sample, and the measured log-log slope was 0.17–0.36. With the factor, a walk reaches
  the end with probability ``≥ 1 − δ``.
* The step: both readings run (``prm_step_units``). Per verified token, in order
  (``step_unit="token"``, :func:`lpg.algorithms.best_of_m.token_steps`, the process
  reward's unit and :class:`lpg.TokenBestOfM`'s default), or one step on the summed
  prefix gradient (``"response"``, the paper's reading of the step elsewhere), whose norm
  grows like ``N`` on a task whose positions share weights: each early update moves ``w``
  by ``~1/N``, the number of failed iterations grows with ``N``, and the cost can turn
  super-linear — against the bound, whose ``1/(γ²ε)`` term has no ``N``. C9 under each
  reading is in ``summary.verdict``. Summing the ``L`` token steps at the iteration's
  weights instead of taking them in order is unstable: on this task it moves ``w`` ``L``
  times as far as one step, and at ``N = 512`` one walk solved a context outright.

What Algorithm 2 is expected to show (C9's form). Its cost is ``a + b·N``
(``summary.json``: ``prm_affine_fit``, bootstrap intervals): ``a`` the on-policy checks
(the bound's ``1/(γ²ε)`` term, whose iterations do not grow with ``N``) and ``b·N`` the
walks, with ``b`` proportional to ``min(1/Q^TL, k)`` (``per_N_over_m0`` should be about
the same for both ``k`` and both bases). The contrast the claim is about: the PRM's cost
grows linearly in ``N``, the ORM's as ``k^N`` (``32^128 ≈ 10^193``). The numbers of a run
are in its ``summary.json`` and printed table, not here.

CPU default: 2 ``k`` × 2 bases × 16 seeds; Algorithm 1 at the 8 ``N`` of ``Ns`` (per response)
and at ``N ≤ 32`` (per token); Algorithm 2 under both readings at the 8 ``N``, and at 11 at
``k = 4`` (``prm_extra_Ns``). About 7 minutes on 2 CPU cores shared with other jobs
(2026-12-01: 428 s wall, 377 s CPU, load average 4.6–8.8). What was cut to make room for
C9's second reading (the previous default, 11 ``N`` for every series and the per-token
Algorithm 1 at 8, spent about 460 s CPU in its sweeps alone without it), and why the tests
keep their power:

* Algorithm 1 runs at neither 80, 96, 112 (there for C9's regime only) nor, per token, at
  64 and 128 (the most costly runs: ``N`` sequential steps at the padded length 128). C5's
  slopes had 95% intervals of at most ±0.0008 against a ±15% band (±0.08 to ±0.5); with
  2–7 points per series they are within ±0.004 (the ``orm_token_*`` rows, ±0.0004 per
  response).
* Algorithm 2 runs at 80, 96, 112 only where C9's regime needs them (``k = 4``, rule above).
  At ``k = 32`` the regimes keep 6 and 4 points over a span of 32 and 8 in ``N``, and
  ``N^1.3`` lies 0.19 and 0.18 above ``s_log`` there (0.18 with the extras): super-linear
  growth still fails whatever the noise, and the measured intervals of the per-token
  series kept their widths (0.21 and 0.29, before 0.20 and 0.28; upper ends 0.111 and
  0.151 against bounds 0.28 and 0.26).
* The seeds stay 16: C9's intervals need them (``k = 4``, uniform base, per token: upper
  end 0.231 against a bound 0.241).

GPU: the ``gpu`` profile, ``--seeds 64 --set Ns=1,2,4,8,16,32,64,128,256,512 max_steps=40000`` and the
same ``orm_token_Ns`` (every series has at least 4 ``N`` in C9's regime, so no extras).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import plotting
from lpg.algorithms.base import READINGS, STEP_UNITS
from lpg.analysis import (affine_fit, checks_line, claim_under_readings, curvature_fit, curvature_record,
                          curvature_share, fit_record, fmt_slope, mark_conditional, slopes_table, under_reading)
from lpg.hitting import likelihood_at_least, run_until
from lpg.problem import base_quantiles, planted_problem
from lpg.spec import Choices, Experiment, Int, Ints, PER_POINT, Profile, Real, Sweep, common, divides
from lpg.theory import orm_log_m, prm_log_m

LN10 = math.log(10.0)
ALGS = ("orm", "prm")
BASES = ("uniform", "pretrained")
ALG_LABEL = {"orm": "Alg. 1 (ORM)", "prm": "Alg. 2 (PRM)"}
DEFAULT_NS = [1, 2, 4, 8, 16, 32, 64, 128]
"""The default ``Ns``: the powers of two to 128."""
TOKEN_NS = [1, 2, 4, 8, 16, 32]
"""Algorithm 1's per-token reading at the default: ``N ≤ 32`` (module docstring, "CPU default")."""
PRM_EXTRA_NS = [80, 96, 112]
"""Algorithm 2's extra ``N`` where C9's regime needs them (:func:`prm_Ns`; at the defaults, ``k = 4``)."""
STYLE = {
    ("orm", "uniform"): dict(color=plotting.COLORS["orm"], marker="o"),
    ("orm", "pretrained"): dict(color="#e08a3c", marker="s"),
    ("prm", "uniform"): dict(color=plotting.COLORS["prm"], marker="o"),
    ("prm", "pretrained"): dict(color="#3aa1a1", marker="s"),
}
"""Colour and marker of each (algorithm, base model) series."""


def pad_of(N: int) -> int:
    """Padded length of the compiled program that runs ``N``: the smallest ``8·4^j ≥ N``
    (runs of one bucket share a compile; short runs do not pay for ``N = 128``)."""
    pad = 8
    while pad < N:
        pad *= 4
    return pad


def pretrained_base(config: dict, k: int):
    """Supervised base weights (Adagrad, token-averaged cross-entropy). The planted
    task's per-token law along ``y*`` is the same at every position, so the weights do
    not depend on ``N`` (pre-trained once, at ``N = 1``)."""
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=1, gamma=config["gamma"])
    problem = planted_problem(task, key=jax.random.PRNGKey(0))
    return lpg.pretrain(problem, jax.random.PRNGKey(config["task_seed"] + 1), steps=config["pretrain_steps"],
                        batch_size=config["pretrain_batch"], lr=config["pretrain_lr"])


def step_units(config: dict, alg_name: str) -> list[str]:
    """The readings of the adaptive step an algorithm runs under (the paper's first; results
    of the previous version name Algorithm 2's one reading ``prm_step_unit``)."""
    if alg_name == "orm":
        return list(config["orm_step_units"])
    return list(config.get("prm_step_units") or [config.get("prm_step_unit", "token")])


DEFAULT_UNIT = {"orm": "response", "prm": "token"}
"""Each algorithm's own default reading (:class:`lpg.BestOfM`, :class:`lpg.TokenBestOfM`):
its series keep the plain names, the other reading's carry a tag (:func:`reading_tag`)."""


def reading_tag(alg_name: str, unit: str) -> str:
    """``""`` for an algorithm's own default reading, ``"_token"`` / ``"_response"`` for the other."""
    return "" if unit == DEFAULT_UNIT[alg_name] else f"_{unit}"


def series_name(alg_name: str, unit: str, base: str, k: int) -> str:
    """A series' name in ``slopes``: ``orm_token_…`` for Algorithm 1's per-token reading,
    ``prm_response_…`` for Algorithm 2's response-level one (:data:`DEFAULT_UNIT`)."""
    return f"{alg_name}{reading_tag(alg_name, unit)}_{base}_k{k}"


def make_run(config: dict, alg_name: str, k: int, pad: int, w_pre, unit: str):
    """One run: ``fn(key, N, base)`` (``base`` 0 uniform, 1 pre-trained) with the adaptive
    step read as ``unit`` (``step_unit``)."""
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=pad, gamma=config["gamma"])
    eps = config["eps"]
    alg = (lpg.BestOfM(batch_size=config["batch_size"], step_unit=unit) if alg_name == "orm"
           else lpg.TokenBestOfM(batch_size=config["batch_size"], step_unit=unit))
    target = likelihood_at_least(eps)

    def run(key, N, base):
        w0 = jnp.where(base == 1, w_pre, jnp.zeros_like(w_pre))
        problem = planted_problem(task, key=jax.random.PRNGKey(0), base=w0, length=N)
        log_q, log_tl = base_quantiles(problem, eps)
        log_m = orm_log_m(log_q, N, k) if alg_name == "orm" else prm_log_m(log_tl, k, N, config["delta"])
        hyper = lpg.Hyper(jnp.float32(1.0), log_m.astype(jnp.float32), jnp.float32(jnp.inf))
        hit = run_until(alg, problem, hyper, key, max_steps=config["max_steps"], target=target,
                        check_every=config["check_every"])
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_m": log_m,
                "log_q0": log_q, "log_q0_tl": log_tl}

    return run


def token_Ns(config: dict) -> list[int]:
    """The ``N`` of Algorithm 1's per-token reading: those of ``Ns`` in ``orm_token_Ns``."""
    return [N for N in config["Ns"] if N in config["orm_token_Ns"]]


def c9_m0(config: dict, k: int, w0) -> float:
    """``m0 = min(1/Q^TL_{q0}(ε), k)`` of the base ``w0`` at ``k``, known before any run: at
    the largest of ``Ns`` (it is flat in ``N`` on the planted task; :func:`summary_of` takes
    the median over the runs' ``N``)."""
    N = max(config["Ns"])
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=pad_of(N), gamma=config["gamma"])
    problem = planted_problem(task, key=jax.random.PRNGKey(0), base=w0, length=N)
    return min(math.exp(-float(base_quantiles(problem, config["eps"])[1])), k)


def prm_Ns(config: dict, k: int, w_pre) -> list[int]:
    """Algorithm 2's ``N`` at ``k``: ``Ns``, and also ``prm_extra_Ns`` where C9's regime
    (``N·m0 ≥ 1/ε``, :func:`c9_m0`) holds fewer than :data:`C9_MIN_POINTS` of ``Ns`` from
    one of the bases (at the defaults: ``k = 4``, where it starts at ``N ≥ 25`` and ``≈ 57``)."""
    if not config["prm_extra_Ns"]:
        return list(config["Ns"])
    bases = {"uniform": jnp.zeros_like(w_pre), "pretrained": w_pre}
    short = any(sum(N * c9_m0(config, k, bases[b]) >= 1.0 / config["eps"] for N in config["Ns"]) < C9_MIN_POINTS
                for b in config["bases"])
    return sorted(set(config["Ns"]) | set(config["prm_extra_Ns"])) if short else list(config["Ns"])


def _token_grid(c: dict):
    if "orm" in c["algs"] and "token" in c["orm_step_units"] and len(token_Ns(c)) < 2:
        return (f"orm_token_Ns must hold at least 2 of Ns={c['Ns']} for Algorithm 1's per-token reading, "
                f"got {c['orm_token_Ns']}")
    return None


def _gamma_fits(c: dict):
    for k in c["ks"]:
        if lpg.features.max_planted_contexts(k, c["gamma"]) < 1:
            return f"gamma must be at most sqrt(k/(k-1)) for k={k}, got {c['gamma']!r}"
    return None


def _fmt(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _select(table, alg, k, base, unit=None):
    """The runs of one series under the reading ``unit`` of the step (default: the
    algorithm's own, :data:`DEFAULT_UNIT`; a table without a ``step_unit`` column holds
    the response-level reading only, and then Algorithm 2's runs are taken as they are)."""
    unit = unit or DEFAULT_UNIT[alg]
    sel = (table["alg"] == alg) & (table["k"] == k) & (table["base"] == BASES.index(base))
    if alg == "orm" or "step_unit" in table:
        sel &= under_reading(table, unit)
    return table.rows(sel)


C9_MIN_POINTS = 4
"""C9's test needs at least this many ``N`` in its regime (a quadratic has 3 coefficients)."""
C9_MARGIN = 0.1
"""C9's curvature share may exceed that of ``N·ln(N/δ)`` by at most this much (module docstring)."""


def c9_record(N, queries, censored, regime, config: dict) -> dict:
    """C9's test (module docstring): the share ``s`` of ``c·N²`` in the rise of
    ``a + b·N + c·N²`` fitted to the median queries over ``regime``; confirmed when its
    95% interval is at most ``s_log + C9_MARGIN``, ``s_log`` the share of the log factor
    ``N·ln(N/δ)`` at the same ``N``; not estimable with fewer than ``C9_MIN_POINTS`` of them."""
    fit = curvature_fit(N, queries, censored, regime=regime, min_points=C9_MIN_POINTS, n_boot=config["n_boot"])
    xs = np.asarray(fit["points"]["x"])[np.isfinite(fit["points"]["median"])]
    s_log = curvature_share(xs, xs * np.log(xs / config["delta"]), min_points=C9_MIN_POINTS) if xs.size else math.nan
    note = (f"C9: share of c·N² in the rise of a + b·N + c·N² (medians) where N·min(1/Q^TL, k) >= 1/eps; confirmed "
            f"when its 95% CI is at most s_log + {C9_MARGIN:g}, s_log the share of N·ln(N/delta); not estimable "
            f"with fewer than {C9_MIN_POINTS} N")
    rec = curvature_record(fit, s_log + C9_MARGIN, note=note, claim="C9")
    rec.update(s_log=s_log, margin=C9_MARGIN, boot_valid=fit["boot_valid"])
    return rec


def summary_of(table, config: dict) -> dict:
    eps, gamma = config["eps"], config["gamma"]
    slopes, affine, bases_info = {}, {}, {}
    for k in config["ks"]:
        for base in config["bases"]:
            any_sel = (table["k"] == k) & (table["base"] == BASES.index(base))
            Ns = np.unique(table["N"][any_sel])
            log_q0 = np.array([table["log_q0"][any_sel & (table["N"] == N)][0] for N in Ns])
            log_tl = np.array([table["log_q0_tl"][any_sel & (table["N"] == N)][0] for N in Ns])
            # exact per-token rate of the base: ln(1/Q) is linear in N for both bases
            rate = float(np.polyfit(Ns, -log_q0, 1)[0]) if Ns.size > 1 else float("nan")
            bases_info[f"{base}_k{k}"] = {"N": Ns.tolist(), "log10_Q_q0": (log_q0 / LN10).tolist(),
                                          "Q_TL_q0": np.exp(log_tl).tolist(), "orm_rate": rate}
            for alg in config["algs"]:
                for unit in step_units(config, alg):
                    sel = _select(table, alg, k, base, unit)
                    if len(sel):
                        _series_records(slopes, affine, sel, alg, unit, base, k, Ns, log_q0, log_tl, rate, config)
            for alg, row in (("orm", ""), ("prm", "_curvature")):  # C5's test, C9's test
                pair = {READINGS[u]: slopes.get(series_name(alg, u, base, k) + row) for u in STEP_UNITS}
                if all(pair.values()):
                    mark_conditional(pair)
    verdicts = {}
    for claim, alg in (("C5", "orm"), ("C9", "prm")):
        if alg in config["algs"]:
            tests = {READINGS[u]: [rec for rec in slopes.values() if rec.get("claim") == claim
                                   and rec.get("reading") == u and "accept" in rec] for u in step_units(config, alg)}
            verdicts.update(claim_under_readings(claim, tests))
    return {
        "experiment": "scaling-n",
        "claims": ["C5", "C9"],
        "eps": eps,
        "gamma": gamma,
        "slopes": slopes,
        "prm_affine_fit": affine,
        "bases": bases_info,
        "censored_runs": int(np.sum(~table["hit"])),
        "runs": int(table["hit"].size),
        "verdict": verdicts,
    }


def _series_records(slopes, affine, sel, alg, unit, base, k, Ns, log_q0, log_tl, rate, config) -> None:
    """The records of one series (Algorithm 1's C5 slope, or Algorithm 2's C9 rows and
    ``a + b·N`` fit) into ``slopes`` and ``affine``, each naming its reading of the step."""
    eps = config["eps"]
    x, lq, cens = sel["N"].astype(float), sel["log_queries"], ~sel["hit"]
    name = series_name(alg, unit, base, k)
    if alg == "orm":
        dominant = -log_q0 >= math.log(10.0 / eps)  # 1/Q_q0(eps) >= 10/eps
        n_min = Ns[dominant].min() if dominant.any() else Ns.max()
        accept = (0.85 * rate, 1.15 * rate)
        note = ("ln(queries) vs N; theory ln k" if base == "uniform"
                else "ln(queries) vs N; theory ln(1/p0) = d ln(1/Q_q0(eps))/dN of the pre-trained base")
        slopes[name] = fit_record(x, lq, cens, theory=rate, accept=accept, log_x=False, log_y=False,
                                  regime=[float(n_min), float(Ns.max())], n_boot=config["n_boot"],
                                  note=note + ("" if unit == "response" else f"; {READINGS[unit]}"), claim="C5")
        slopes[name]["reading"] = unit
        return
    m0 = float(np.median(np.minimum(np.exp(-log_tl), k)))  # min(1/Q^TL, k), flat in N here
    dominant = Ns * m0 >= 1.0 / eps  # C9's N-term at least its 1/ε term; no fallback
    regime = [float(Ns[dominant].min()), float(Ns.max())] if dominant.any() else [math.inf, math.inf]
    slopes[name] = fit_record(x, lq, cens, theory=1.0, log_x=True, log_y=False, regime=regime,
                              n_boot=config["n_boot"], claim="C9",
                              note="log-log slope of queries vs N where N·min(1/Q^TL, k) >= 1/eps "
                                   "(reported; C9's test is the _curvature row)")
    slopes[f"{name}_curvature"] = c9_record(x, np.exp(lq.astype(np.float64)), cens, regime, config)
    slopes[f"{name}_all_N"] = fit_record(
        x, lq, cens, theory=1.0, log_x=True, log_y=False, n_boot=config["n_boot"], claim="C9",
        note="log-log slope over every N (reported: below the regime the 1/eps term dominates)")
    for row in ("", "_curvature", "_all_N"):
        slopes[name + row]["reading"] = unit
        slopes[name + row]["note"] += f"; {READINGS[unit]}"
    fit = affine_fit(x, np.exp(lq.astype(np.float64)), cens, n_boot=config["n_boot"])
    affine[name] = {"intercept": fit["intercept"], "intercept_ci": fit["intercept_ci"],
                    "per_N": fit["per_x"], "per_N_ci": fit["per_x_ci"], "m0": m0,
                    "per_N_over_m0": fit["per_x"] / m0,
                    "per_N_over_m0_ci": [v / m0 for v in fit["per_x_ci"]]}


def figure(table, config: dict, summary: dict, out_dir: Path) -> list[Path]:
    from matplotlib.lines import Line2D

    ks = config["ks"]
    n_panels = len(ks) + 2
    ncols = 2
    fig, axes = plotting.figure(ncols, (n_panels + 1) // ncols, width=5.4, height=4.3)
    for ax in axes[n_panels:]:
        ax.axis("off")
    gamma = config["gamma"]
    n_seeds = int(np.unique(table["seed"]).size)
    for i, (ax, k) in enumerate(zip(axes, ks)):
        for alg, unit in [(a, u) for a in config["algs"] for u in step_units(config, a)]:
            for base in config["bases"]:
                sel = _select(table, alg, k, base, unit)
                if not len(sel):
                    continue
                st = STYLE[(alg, base)]
                x = sel["N"].astype(float)
                y = sel["log_queries"] / LN10
                other = unit != DEFAULT_UNIT[alg]  # an algorithm's second reading: dash-dotted, no overlays
                label = f"{ALG_LABEL[alg]}, {base} base" + (f", per-{unit} step" if other else "")
                xs, med = plotting.scaling_series(ax, x, y, ~sel["hit"], color=st["color"], marker=st["marker"],
                                                  label=label, ls="-." if other else "-", jitter=0.8, log_x=False)
                if other:
                    continue
                rec = summary["slopes"][series_name(alg, unit, base, k)]
                if alg == "orm":
                    plotting.theory_overlay(ax, xs, med, rec["theory"], color=st["color"], log_x=False)
                    info = summary["bases"][f"{base}_k{k}"]
                    lb = (-np.asarray(info["log10_Q_q0"]) * LN10 + 2 * math.log(1 / gamma)) / LN10
                    plotting.lower_bound_overlay(ax, info["N"], lb, color=st["color"])
                    if base == "uniform":
                        ax.annotate(f"slope {fmt_slope(rec)} per N (ln k = {math.log(k):.3g})",
                                    xy=(xs[-1], med[-1]), xytext=(-10, -2), textcoords="offset points", ha="right",
                                    va="top", fontsize=7.5, color=st["color"])
                else:
                    plotting.theory_overlay(ax, xs, med, 1.0, color=st["color"], log_x=True)
        ax.set_xlabel("response length N")
        ax.set_ylabel("reward queries to likelihood ≥ 1−ε")
        plotting.log10_axis(ax)
        ax.set_title(f"({'abcd'[i]}) k = {k}: exponential in N (ORM) vs linear (PRM)", fontsize=10)
        ax.grid(alpha=0.25)
        if i == 0:
            handles, _ = ax.get_legend_handles_labels()
            handles += [Line2D([], [], ls="--", color="#555555", label="theory exponent, fitted constant"),
                        Line2D([], [], ls=":", color="#555555", label="ORM lower bound 1/(Q_q0(ε)γ²) (C6)"),
                        plotting.censored_legend_handle()]
            ax.legend(handles=handles, fontsize=7, loc="upper left", frameon=False)

    # PRM on log-log axes: slope 1
    ax = axes[len(ks)]
    units = step_units(config, "prm") if "prm" in config["algs"] else []
    for j, k in enumerate(ks):
        for base, unit in [(b, u) for b in config["bases"] for u in units]:
            sel = _select(table, "prm", k, base, unit)
            if not len(sel):
                continue
            st, other, name = STYLE[("prm", base)], unit != DEFAULT_UNIT["prm"], series_name("prm", unit, base, k)
            x = sel["N"].astype(float)
            y = sel["log_queries"] / LN10
            rec = summary["slopes"][name]
            c9 = summary["slopes"].get(f"{name}_curvature", {}).get("verdict", "n/a").split(" (on ")[0]  # older: none
            xs, med = plotting.scaling_series(ax, x, y, ~sel["hit"], color=st["color"],
                                              marker="v<ph"[j % 4] if other else "oDs^"[j % 4],
                                              ls=(0, (3, 1, 1, 1)) if other else ["-", "--", "-.", ":"][j % 4],
                                              jitter=0.04, label=f"{base}, k={k}, per {unit}: slope "
                                                                 f"{fmt_slope(rec)}; C9 {c9}")
            if not other:
                fit = summary["prm_affine_fit"][name]
                ax.plot(xs, np.log10(fit["intercept"] + fit["per_N"] * np.asarray(xs)), color=st["color"],
                        ls=(0, (1, 3)), lw=1.2)
    ax.set_xscale("log", base=2)
    plotting.log10_axis(ax)
    ax.set_xlabel("response length N")
    ax.set_ylabel("reward queries (Alg. 2, PRM)")
    ax.set_title(f"({'abcd'[len(ks)]}) Alg. 2 (PRM) on log-log axes: queries ∝ N", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper left",
              title="slope where N·min(1/Q^TL, k) ≥ 1/ε [95% CI]; step per token or response\n"
                    "dotted: a + b·N, C9's form, fitted (per token)",
              title_fontsize=7)
    lo, hi = ax.get_ylim()
    room = 0.45 + 0.06 * len(ax.get_legend_handles_labels()[1])  # for the legend above the curves
    ax.set_ylim(lo, hi + room * (hi - lo))
    ax.grid(alpha=0.25, which="both")

    # iterations
    ax = axes[len(ks) + 1]
    for j, k in enumerate(ks):
        for alg in config["algs"]:
            base = "uniform" if "uniform" in config["bases"] else config["bases"][0]
            sel = _select(table, alg, k, base)
            if not len(sel):
                continue
            st = STYLE[(alg, base)]
            x = sel["N"].astype(float)
            y = np.maximum(sel["steps"], 1).astype(float)
            plotting.scaling_series(ax, x, y, ~sel["hit"], label=f"{ALG_LABEL[alg]}, k={k}", color=st["color"],
                                    marker="oDs^"[j % 4], ls=["-", "--", "-.", ":"][j % 4], jitter=0.04)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("response length N")
    ax.set_ylabel(f"iterations to likelihood ≥ 1−ε (batch {config['batch_size']})")
    ax.set_title(f"({'abcd'[len(ks) + 1]}) iterations (updates) from the {base} base", fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(alpha=0.25, which="both")
    title = (f"Outcome vs process rewards as N grows (C5 vs C9): planted task, γ = {gamma:g}, "
             f"ε = {config['eps']:g}; dots: runs, lines: Kaplan–Meier medians over {n_seeds} seeds")
    return plotting.save(fig, out_dir, "scaling_n", title, fontsize=10.5)


class ScalingN(Experiment):
    name = "scaling-n"
    description = ("C5 vs C9: queries to likelihood 1-eps vs response length N — exponential for ORM (Alg. 1), "
                   "linear for PRM (Alg. 2)")
    claims = ("C5", "C9")
    settings = {
        "ks": Ints([4, 32], "vocabulary sizes (one panel each)", low=2),
        "Ns": Ints(DEFAULT_NS, "response lengths", low=1, min_len=2, increasing=True),
        "prm_extra_Ns": Ints(PRM_EXTRA_NS, "Algorithm 2 also runs at these N at a k where C9's regime holds fewer than "
                                           f"{C9_MIN_POINTS} of Ns", low=1, min_len=0, distinct=True),
        "algs": Choices(["orm", "prm"], "algorithms: orm (Algorithm 1), prm (Algorithm 2)", ALGS),
        "bases": Choices(["uniform", "pretrained"], "base models", BASES),
        **common(gamma=0.5, batch_size=4, max_steps=8000, check_every=5, task_seed=0, n_boot=2000),
        "eps": Real(0.01, "target: likelihood >= 1 - eps on every context", low=0.0, high=1.0, open_low=True,
                    open_high=True),
        "delta": Real(0.1, "Algorithm 2's m carries the factor ceil(ln(N/delta))", low=0.0, high=1.0,
                      open_low=True, open_high=True),
        "prm_step_units": Choices(["response", "token"], "Algorithm 2's readings of the adaptive step: per response "
                                  "(the paper's), per verified token", ("response", "token")),
        "orm_step_units": Choices(["response", "token"], "Algorithm 1's readings of the adaptive step: per response "
                                  "(the paper's), per token of the accepted response", ("response", "token")),
        "orm_token_Ns": Ints(TOKEN_NS, "Algorithm 1's per-token reading runs at the N of Ns also in this list (it "
                                       "costs more per iteration)", low=1, distinct=True),
        "pretrain_steps": Int(30, "supervised steps of the pre-trained base", low=1),
        "pretrain_batch": Int(16, "batch of the pre-trained base", low=1),
        "pretrain_lr": Real(0.1, "learning rate of the pre-trained base", low=0.0, open_low=True),
    }
    constraints = (divides("check_every", "max_steps"), _gamma_fits, _token_grid)
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {"Ns": "1,2,4,8,16,32,64,128,256,512", "max_steps": "40000",
                            "orm_token_Ns": "1,2,4,8,16,32,64,128,256,512"}),
        "quick": Profile(4, {"ks": "4,32", "Ns": "1,4,8,16,32,64", "eps": "0.1", "max_steps": "4000", "n_boot": "300"}),
    }

    def sweeps(self, config):
        """One sweep per (k, algorithm, reading of the step, padded length), one chunk per grid point."""
        base_ids = [BASES.index(b) for b in config["bases"]]
        for k in config["ks"]:
            w_pre = pretrained_base(config, k)
            grids = {"orm": config["Ns"], "orm_token": token_Ns(config)}
            if "prm" in config["algs"]:
                grids["prm"] = grids["prm_response"] = prm_Ns(config, k, w_pre)
            for alg_name in config["algs"]:
                for unit in step_units(config, alg_name):
                    tag = reading_tag(alg_name, unit)
                    buckets: dict[int, list[int]] = {}
                    for N in grids[alg_name + tag]:
                        buckets.setdefault(pad_of(N), []).append(N)
                    for pad, Ns in buckets.items():
                        yield Sweep(f"{alg_name}{tag}_k{k}_pad{pad}", make_run(config, alg_name, k, pad, w_pre, unit),
                                    {"N": Ns, "base": base_ids}, {"alg": alg_name, "k": k, "step_unit": unit},
                                    chunk_size=PER_POINT)

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir)

    def text(self, summary: dict) -> str:
        lines = [slopes_table(summary["slopes"])]
        for name, rec in summary["slopes"].items():
            if name.endswith("_curvature"):
                lines.append(f"{name}: C9's curvature share {fmt_slope(rec)} over {rec['n_points']} N in "
                             f"{rec['regime']}, bound s_log + {rec['margin']:g} = {_fmt(rec['accept'][1])} "
                             f"(s_log = {_fmt(rec['s_log'])}, the log factor's share), "
                             f"{READINGS.get(rec.get('reading'), 'the per-token step')}: {rec['verdict']}")
        for name, fit in summary.get("prm_affine_fit", {}).items():
            lo, hi = fit["per_N_ci"]
            lines.append(f"{name}: median queries ≈ {fit['intercept']:.3g} + {fit['per_N']:.3g}·N "
                         f"[{lo:.3g}, {hi:.3g}]; per N per unit of min(1/Q^TL, k) = {fit['m0']:.3g}: "
                         f"{fit['per_N_over_m0']:.3g}")
        lines.append(f"censored runs: {summary['censored_runs']}/{summary['runs']}")
        if summary.get("verdict"):
            lines.append(checks_line(summary["verdict"]))
        return "\n".join(lines)
