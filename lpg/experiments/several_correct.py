"""``several-correct``: tasks with a set ``S(x)`` of ``c`` correct responses per context
(issue 14, question 3; :mod:`lpg.multi`).

Setting. Teacher tasks (PAPER.md §1) with ``k = 2``, Rademacher contexts in ``d = 4``
dimensions: the ``2^d = 16`` contexts are uniform and all tracked, so the target
``min_x p_w(S(x)|x) ≥ 1 − ε`` is checked on the exact context distribution. Sets: ``y*``
with the first ``f`` of the odd positions free (``c = k^f``, exact), or the responses of
``c`` linear teachers (the task's and ``c − 1`` extra N(0, 1) teachers; teachers that
agree on a context give one member, so ``|S(x)| ≤ c``: the run records the mean
``|S(x)|``). Base model: uniform (``q0 = Unif``, so ``½q0 + ½Unif`` is uniform too).

Questions and predictions (derived before running at the defaults).

1. **The outcome reward's barrier** (part ``orm_free``/``orm_teachers``): reward queries of
   Algorithm 1 (:class:`lpg.multi.SetBestOfM`, ``m = ∞``, response-level adaptive step,
   exact event path) until the target, against ``c``. From the uniform base a fallback
   draw is correct with probability ``|S(x)|/k^N`` exactly, so every iteration whose
   on-policy sample misses the set costs ``Geometric(c/k^N)``, mean ``k^N/c``, draws, and
   ``Q ≈ F·k^N/c`` with ``F`` the number of such iterations. If ``F`` (how fast ``p_w(S)``
   rises) does not depend on ``c``, the query count scales as ``k^N/c``; a set that is
   harder for the linear policy to cover (more iterations) makes the slope shallower.
   Prediction: log-log slope of the median query count against ``c`` (free
   positions, ``c = 1..16``, ``k^N = 1024``, so ``k^N/c ≥ 64``) is ``−1``, accepted in
   ``[−1.3, −0.7]``; with teachers the slope against the nominal ``c`` is shallower, since
   ``|S(x)| < c`` where teachers agree (reported, not tested). Seeds draw different tasks,
   so the summary also gives the slope seed by seed (one task, every ``c``) and the median
   iterations to the target per ``c``, which separate ``F`` from the factor ``k^N/c``.
2. **The process reward when correct prefixes branch** (part ``prm``): Algorithm 2 on the
   trie of the members (:class:`lpg.multi.SetTokenBestOfM`), ``c`` teachers, queries until
   the target against ``N`` and ``c``. A walk costs ``Σ_i k/b_i`` expected draws from the
   uniform mixture, ``b_i`` the number of accepted children of the walked prefix: ``b_i = 1``
   except at the (at most ``c − 1``) positions where members diverge. So a walk costs about
   ``N·k`` whatever ``c``, and (C9) the total stays linear in ``N``. Prediction: slope in
   ``N`` (log-log, per ``c``) ``1`` accepted in ``[0.7, 1.3]``; slope in ``c`` at the largest
   ``N`` ``0`` accepted in ``[−0.3, 0.3]``. A margin violation can only show here as a
   *positive* slope: walks that take different branches push the shared weights apart.
3. **On-policy PG: one answer or the whole set?** (parts ``pg_free``/``pg_teachers``):
   :class:`lpg.multi.SetPolicyGradient`, 0/1 outcome reward, no baseline, from the uniform
   base for ``pg_steps`` steps; at the end, per context with ``|S(x)| ≥ 2``: the share of
   the set's mass on its most likely member ``max_j p(m_j)/p(S)`` and the normalised entropy
   of the policy restricted to the set ``H(p(·|S))/log|S|``. The expected 0/1 update is
   ``Σ_{y∈S} p(y)∇log p(y) = ∇p(S)``: gradient ascent on the set's mass, where the update of
   member ``y`` is proportional to ``p(y)`` (rich get richer). *Teachers*: at a branching
   position the two tokens compete for the same logit mass and the branch with the larger
   ``p(t)·P(rest|t)`` grows: the policy concentrates on one member. Prediction: median top
   share ``≥ 0.9`` over the contexts with ``|S(x)| ≥ 2``. This is what the margin
   violation changes: no linear policy puts ``> ½`` on two members that share a prefix, so
   spreading is impossible beyond ½, and PG does not try. *Free positions*: if the tokens
   after a free position did not depend on it, ``∂p(S)/∂z_t = 0`` at a free position's
   logits (``p(S, y_i = t) = p_i(t)·P(rest)``): no drift, only noise, so the mass stays
   spread. With bigram features the next fixed token's logit depends on the free token
   (``W2[y_i, ·]``), a weaker rich-get-richer force. Prediction: the median normalised
   entropy stays ``≥ 0.5`` (spread), well above the teachers'.

Verdict keys (``summary.json``): the two ORM/PRM slope records with ranges, and the
checks ``pg_teachers_concentrates`` (median top share ≥ 0.9) and ``pg_free_spreads``
(median normalised entropy ≥ 0.5). Intervals are 95% bootstrap over seeds (slopes) or
over seeds of per-seed means (PG); the per-context picture is printed (how many contexts
concentrate, pooled over seeds).
"""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import multi, plotting
from lpg.algorithms.train import step_key
from lpg.analysis import fit_record, slopes_table
from lpg.hitting import run_until
from lpg.results import summarise
from lpg.spec import Experiment, Int, Ints, Profile, Real, Sweep, at_most, common, divides

LN10 = math.log(10.0)
CONCENTRATED = 0.9  # top share that counts as "one member"
SPREAD = 0.5  # normalised entropy that counts as "spread"

SETTINGS = {
    **common(k=2, d=4, batch_size=1, max_steps=12000, check_every=20, n_boot=2000),
    "eps": Real(0.2, "target: min_x p_w(S(x)|x) >= 1 - eps", low=0.0, high=1.0, open_low=True, open_high=True),
    "orm_N": Int(10, "response length of the ORM part", low=1),
    "free_counts": Ints([0, 1, 2, 3, 4], "free positions f (c = k^f) of the ORM part", low=0, distinct=True,
                        increasing=True),
    "teacher_counts": Ints([1, 2, 4, 8], "teachers c of the ORM part", low=1, distinct=True, increasing=True),
    "prm_Ns": Ints([4, 8, 12, 16], "response lengths of the PRM part", low=1, distinct=True, increasing=True),
    "prm_teachers": Ints([1, 2, 4], "teachers c of the PRM part", low=1, distinct=True, increasing=True),
    "pg_N": Int(6, "response length of the PG part", low=1),
    "pg_free": Ints([1, 2, 3], "free positions of the PG part", low=1, distinct=True, increasing=True),
    "pg_teachers": Ints([2, 4], "teachers of the PG part", low=2, distinct=True, increasing=True),
    "pg_steps": Int(400, "on-policy PG steps", low=1),
    "pg_batch": Int(16, "PG contexts per step", low=1),
    "pg_lr": Real(1.0, "PG learning rate (adaptive step)", low=0.0, open_low=True),
}


def _free_fit(key: str, n: str):
    """The free positions 1, 3, 5, … (0-based) must fit in the response."""
    def rule(c):
        need = 2 * max(c[key])
        return None if need <= c[n] else f"{key} must have max <= {n}/2 = {c[n] // 2} (free positions 1, 3, 5, ...), " \
                                          f"got {c[key]}"
    return rule


def _small_d(c):
    return None if c["d"] <= 8 else f"d must be at most 8 (all 2^d contexts are tracked), got {c['d']}"


CONSTRAINTS = (divides("check_every", "max_steps"), _free_fit("free_counts", "orm_N"), _free_fit("pg_free", "pg_N"),
               _small_d, at_most("batch_size", "max_steps"))


def all_contexts(d: int) -> jax.Array:
    """Every Rademacher context ``{±1}^d``: ``(2^d, d)``."""
    return jnp.asarray(list(itertools.product([-1.0, 1.0], repeat=d)), jnp.float32)


def free_positions(n: int) -> tuple:
    return tuple(range(1, 2 * n, 2))


def setup(config: dict, key, N: int, kind: str, capacity: int, size, length=None):
    """The problem (uniform base, all contexts tracked) and the answer set of one run."""
    k_task, k_test, k_extra = jax.random.split(key, 3)
    task = lpg.make_teacher(k_task, d=config["d"], k=config["k"], N=N)
    problem = lpg.make_problem(task, key=k_test, n_test=16, track_x=all_contexts(config["d"]), length=length)
    if kind == "free":
        answers = multi.FreePositions(config["k"], free_positions(capacity), size)
    else:
        answers = multi.make_teachers(k_extra, n_extra=capacity - 1, k=config["k"], d=config["d"], n_teachers=size)
    return problem, answers


def set_sizes(problem, answers) -> jax.Array:
    return jax.vmap(lambda x, y: answers.size(x, y, problem.length))(problem.track_x, problem.track_y)


def _hit_outputs(hit, problem, answers) -> dict:
    return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries,
            "mean_set_size": jnp.mean(set_sizes(problem, answers).astype(jnp.float32))}


@functools.lru_cache(maxsize=16)
def _orm_run(items: tuple, kind: str):
    config = dict(items)
    capacity = max(config["free_counts"]) if kind == "free" else max(config["teacher_counts"])

    def run(key, size):
        k_set, k_run = jax.random.split(key)
        problem, answers = setup(config, k_set, config["orm_N"], kind, capacity, size)
        alg = multi.SetBestOfM(reward=multi.SetOutcome(answers), batch_size=config["batch_size"])
        hit = run_until(alg, problem, lpg.hyper(), k_run, max_steps=config["max_steps"],
                        check_every=config["check_every"], target=multi.set_likelihood_at_least(answers, config["eps"]))
        return _hit_outputs(hit, problem, answers)

    return run


@functools.lru_cache(maxsize=16)
def _prm_run(items: tuple):
    config = dict(items)

    def run(key, length, size):
        k_set, k_run = jax.random.split(key)
        problem, answers = setup(config, k_set, max(config["prm_Ns"]), "teachers", max(config["prm_teachers"]), size,
                                 length=length)
        alg = multi.SetTokenBestOfM(reward=multi.SetProcess(answers), batch_size=config["batch_size"])
        hit = run_until(alg, problem, lpg.hyper(), k_run, max_steps=config["max_steps"],
                        check_every=config["check_every"], target=multi.set_likelihood_at_least(answers, config["eps"]))
        return _hit_outputs(hit, problem, answers)

    return run


@functools.lru_cache(maxsize=16)
def _pg_run(items: tuple, kind: str):
    config = dict(items)
    capacity = max(config["pg_free"]) if kind == "free" else max(config["pg_teachers"])

    def run(key, size):
        k_set, k_run = jax.random.split(key)
        problem, answers = setup(config, k_set, config["pg_N"], kind, capacity, size)
        alg = multi.SetPolicyGradient(multi.SetOutcome(answers), batch_size=config["pg_batch"])
        hyper = lpg.hyper(lr=config["pg_lr"])
        # A plain loop (the key of step t is lpg.train's): only the final weights are read.
        state = jax.lax.fori_loop(0, config["pg_steps"],
                                  lambda t, st: alg.step(st, step_key(k_run, t), problem, hyper)[0],
                                  alg.init(problem.base_weights(), hyper))
        return {"member_log_lik": multi.track_member_log_lik(problem, answers, state.w),
                "set_size": set_sizes(problem, answers)}

    return run


def _items(config):
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in config.items()))


# ---------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------


def hitting_rows(table, part: str) -> dict:
    rows = table.where(part=part)
    return {"hit": rows["hit"].astype(bool), "queries": np.exp(rows["log_queries"].astype(np.float64)),
            "steps": rows["steps"].astype(np.float64),
            "size": rows["size"].astype(np.float64), "mean_set_size": rows["mean_set_size"].astype(np.float64),
            "length": rows["length"].astype(np.float64) if "length" in rows else None, "seed": rows["seed"]}


def _per_point(r: dict, key: str, config: dict) -> list[dict]:
    """Median queries (censored runs at their budget), mean ``|S(x)|`` and hits per grid point."""
    out = []
    for v in np.unique(r[key]):
        sel = r[key] == v
        out.append({key: float(v), "median_queries": float(np.median(r["queries"][sel])),
                    "median_steps": float(np.median(r["steps"][sel])),
                    "mean_set_size": float(np.mean(r["mean_set_size"][sel])), "hits": int(r["hit"][sel].sum()),
                    "runs": int(sel.sum())})
    return out


def member_log_lik(rows) -> np.ndarray:
    """``(R, n_track, C)`` member log-likelihoods, ``-inf`` off the set (and where the
    table padded a part with a smaller capacity ``C``)."""
    ll = rows["member_log_lik"].astype(np.float64)
    return np.where(np.isnan(ll), -np.inf, ll)


def per_seed_slopes(r: dict, x: np.ndarray, accept) -> dict:
    """Seed by seed (one task per seed, every ``c``): the least-squares slope of ``ln Q``
    on ``ln x`` (censored runs at their budget, so a lower bound on the queries)."""
    slopes = []
    for seed in np.unique(r["seed"]):
        sel = r["seed"] == seed
        slopes.append(float(np.polyfit(np.log(x[sel]), np.log(r["queries"][sel]), 1)[0]))
    slopes = np.asarray(slopes)
    return {"median": float(np.median(slopes)), "in_range": int(np.sum((slopes >= accept[0]) & (slopes <= accept[1]))),
            "seeds": int(slopes.size), "values": slopes.tolist(), "mean": summarise(slopes)}


def pg_stats(table, part: str, k: int | None = None) -> dict:
    """Per context with ``|S(x)| ≥ 2`` at the end of PG: top-member share, normalised
    entropy of the policy restricted to the set, and the set's mass; keyed by the nominal
    ``c`` (``k^f`` for ``f`` free positions when ``k`` is given, else the teachers)."""
    rows = table.where(part=part)
    ll = member_log_lik(rows)
    sizes = rows["set_size"].astype(np.int64)  # (R, n_track)
    seeds, size = rows["seed"], rows["size"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.exp(ll).sum(-1)
        p = np.exp(ll) / mass[..., None]
        ent = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1) / np.log(np.maximum(sizes, 2))
        top = p.max(-1)
    multi_ = sizes >= 2
    out = {}
    for v in np.unique(size):
        sel = size == v
        m = multi_[sel]
        seed_top = [float(np.median(t[mm])) if mm.any() else math.nan for t, mm in zip(top[sel], m)]
        seed_ent = [float(np.median(e[mm])) if mm.any() else math.nan for e, mm in zip(ent[sel], m)]
        out[str(int(k ** v if k else v))] = {
            "contexts": int(m.sum()), "median_top_share": float(np.median(top[sel][m])) if m.any() else math.nan,
            "median_entropy": float(np.median(ent[sel][m])) if m.any() else math.nan,
            "concentrated": int((top[sel][m] >= CONCENTRATED).sum()), "spread": int((ent[sel][m] >= SPREAD).sum()),
            "median_set_mass": float(np.median(mass[sel][m])) if m.any() else math.nan,
            "top_share_per_seed": summarise(seed_top), "entropy_per_seed": summarise(seed_ent),
            "seeds": int(len(np.unique(seeds[sel]))),
        }
    pooled_top = top[multi_]
    pooled_ent = ent[multi_]
    return {"by_size": out, "median_top_share": float(np.median(pooled_top)) if pooled_top.size else math.nan,
            "median_entropy": float(np.median(pooled_ent)) if pooled_ent.size else math.nan,
            "contexts": int(multi_.sum())}


def summary_of(table, config: dict) -> dict:
    n_boot = config["n_boot"]
    kN = config["k"] ** config["orm_N"]
    free, teach, prm = (hitting_rows(table, p) for p in ("orm_free", "orm_teachers", "prm"))
    slopes = {
        "orm_queries_vs_c_free": fit_record(config["k"] ** free["size"], free["queries"], ~free["hit"], theory=-1.0,
                                            accept=(-1.3, -0.7), n_boot=n_boot,
                                            note="d ln Q / d ln c, c = k^f free positions, uniform base (k^N/c)"),
        "orm_queries_vs_c_teachers": fit_record(teach["size"], teach["queries"], ~teach["hit"], theory=-1.0,
                                                n_boot=n_boot,
                                                note="d ln Q / d ln c against the nominal number of teachers "
                                                     "(|S(x)| <= c where teachers agree): reported"),
    }
    n_max = max(config["prm_Ns"])
    for c in config["prm_teachers"]:
        sel = prm["size"] == c
        slopes[f"prm_queries_vs_N_c{c}"] = fit_record(prm["length"][sel], prm["queries"][sel], ~prm["hit"][sel],
                                                      theory=1.0, accept=(0.7, 1.3), n_boot=n_boot,
                                                      note="d ln Q / d ln N of Algorithm 2 on the members' trie")
    sel = prm["length"] == n_max
    slopes["prm_queries_vs_c"] = fit_record(prm["size"][sel], prm["queries"][sel], ~prm["hit"][sel], theory=0.0,
                                            accept=(-0.3, 0.3), n_boot=n_boot,
                                            note=f"d ln Q / d ln c at N = {n_max} (walks cost ~N k whatever c)")
    per_seed = per_seed_slopes(free, config["k"] ** free["size"], (-1.3, -0.7))
    pg = {"teachers": pg_stats(table, "pg_teachers"), "free": pg_stats(table, "pg_free", config["k"])}
    ratio = free["queries"] * config["k"] ** free["size"] / kN
    verdict = {
        "orm_slope_minus_1": slopes["orm_queries_vs_c_free"]["verdict"],
        "prm_linear_in_N": all(slopes[f"prm_queries_vs_N_c{c}"]["verdict"] == "confirmed"
                               for c in config["prm_teachers"]),
        "prm_flat_in_c": slopes["prm_queries_vs_c"]["verdict"],
        "pg_teachers_concentrates": bool(pg["teachers"]["median_top_share"] >= CONCENTRATED),
        "pg_free_spreads": bool(pg["free"]["median_entropy"] >= SPREAD),
    }
    return {
        "slopes": slopes,
        "points": {"orm_free": _per_point(free, "size", config), "orm_teachers": _per_point(teach, "size", config),
                   "prm": [{**p, "N": float(n)} for n in config["prm_Ns"]
                           for p in _per_point({k: (v[prm["length"] == n] if v is not None else None)
                                                for k, v in prm.items()}, "size", config)]},
        "orm_queries_times_c_over_kN": summarise(np.log10(ratio)),
        "orm_free_per_seed_slope": per_seed,
        "pg": pg,
        "verdict": verdict,
        "units": {"orm_free_per_seed_slope": "least-squares slope of ln Q on ln c within each seed (one task)",
                  "queries": "reward queries until min_x p_w(S(x)|x) >= 1 - eps (censored runs: the budget's)",
                  "orm_queries_times_c_over_kN": "log10(Q c / k^N) per run of orm_free",
                  "pg": "contexts with |S(x)| >= 2 after pg_steps: top share max_j p(m_j)/p(S), entropy "
                        "H(p(.|S))/log|S|; *_per_seed: mean over seeds of per-seed medians, bootstrap 95%"},
    }


def _interval(s: dict, fmt=lambda v: f"{v:.2f}") -> str:
    if not s["n"]:
        return "n/a"
    return f"{fmt(s['mean'])} [{fmt(s['ci95'][0])}, {fmt(s['ci95'][1])}]"


def text(summary: dict) -> str:
    lines = [slopes_table(summary["slopes"])]
    for part in ("orm_free", "orm_teachers"):
        name = "f" if part == "orm_free" else "c"
        pts = ", ".join(f"{name}={p['size']:g}: {p['median_queries']:.3g} (|S|={p['mean_set_size']:.2f}, "
                        f"{p['hits']}/{p['runs']} hit)" for p in summary["points"][part])
        lines.append(f"{part} median queries: {pts}")
    lines.append(f"ORM log10(Q c/k^N): {_interval(summary['orm_queries_times_c_over_kN'])}")
    ps = summary["orm_free_per_seed_slope"]
    lines.append(f"ORM free positions, slope seed by seed: median {ps['median']:.2f}, mean {_interval(ps['mean'])}, "
                 f"{ps['in_range']}/{ps['seeds']} seeds in [-1.3, -0.7]")
    steps = ", ".join(f"f={p['size']:g}: {p['median_steps']:.0f}" for p in summary["points"]["orm_free"])
    lines.append(f"ORM free positions, median iterations to target: {steps}")
    for kind, st in summary["pg"].items():
        for c, s in st["by_size"].items():
            lines.append(f"PG {kind} c={c}: {s['contexts']} contexts with |S|>=2; top share "
                         f"{_interval(s['top_share_per_seed'])}, {s['concentrated']} >= {CONCENTRATED}; entropy "
                         f"{_interval(s['entropy_per_seed'])}, {s['spread']} >= {SPREAD}; set mass "
                         f"{s['median_set_mass']:.3f} (median)")
    v = summary["verdict"]
    lines.append("verdict: " + "; ".join(f"{k}: {val}" for k, val in v.items()))
    return "\n".join(lines)


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    fig, ax = plotting.figure(3, width=4.3, height=3.5)
    kN = config["k"] ** config["orm_N"]
    for part, color, label in (("orm_free", plotting.COLORS["orm"], "free positions ($c = k^f$)"),
                               ("orm_teachers", "#8e44ad", "teachers (nominal $c$)")):
        r = hitting_rows(table, part)
        c = config["k"] ** r["size"] if part == "orm_free" else r["size"]
        xs, med = plotting.scaling_series(ax[0], c, np.log10(r["queries"]), ~r["hit"], label=label, color=color,
                                          jitter=0.03)
        if part == "orm_free":
            plotting.theory_overlay(ax[0], xs, med, -1.0, color="0.5", label="$\\propto k^N/c$")
    ax[0].set(title=f"Algorithm 1 (ORM), uniform base, $k^N$={kN}", xlabel="correct responses $c$",
              ylabel="queries to target")
    r = hitting_rows(table, "prm")
    cmap = plotting.COLORS["prm"]
    for i, c in enumerate(config["prm_teachers"]):
        sel = r["size"] == c
        xs, med = plotting.scaling_series(ax[1], r["length"][sel], np.log10(r["queries"][sel]), ~r["hit"][sel],
                                          label=f"c={c} teachers", color=cmap, marker="osD^"[i % 4],
                                          ls=["-", "--", ":", "-."][i % 4], jitter=0.02)
        if i == 0:
            plotting.theory_overlay(ax[1], xs, med, 1.0, color="0.5", label="$\\propto N$")
    ax[1].set(title="Algorithm 2 (PRM) on the members' trie", xlabel="response length $N$",
              ylabel="queries to target")
    for a in ax[:2]:
        a.set_xscale("log")
        plotting.log10_axis(a)
        a.legend(fontsize=6)
    bins = np.linspace(1 / 16, 1, 31)
    for part, color, label in (("pg_teachers", "#8e44ad", "teachers"), ("pg_free", plotting.COLORS["orm"], "free")):
        rows = table.where(part=part)
        ll = member_log_lik(rows)
        with np.errstate(invalid="ignore"):
            p = np.exp(ll) / np.exp(ll).sum(-1, keepdims=True)
        top = p.max(-1)[rows["set_size"] >= 2]
        ax[2].hist(top, bins=bins, color=color, alpha=0.5, label=f"{label} ({top.size} contexts)")
    ax[2].axvline(CONCENTRATED, color="0.4", ls=":", lw=1)
    ax[2].set(title=f"on-policy PG after {config['pg_steps']} steps", xlabel="top member's share $\\max_j p(m_j)/p(S)$",
              ylabel="contexts (pooled over seeds)")
    ax[2].legend(fontsize=6)
    title = (f"{name}: several correct responses per context (k={config['k']}, d={config['d']}, "
             f"eps={config['eps']:g}); {plotting.band_note(int(config.get('seeds', 0)))}")
    return plotting.save(fig, out_dir, name, title)


class SeveralCorrect(Experiment):
    name = "several-correct"
    description = "Q3: several correct responses per context: ORM barrier vs c, PRM on branching prefixes, PG spread"
    claims = ("Q3",)
    settings = SETTINGS
    constraints = CONSTRAINTS
    default_seeds = 16
    profiles = {
        "quick": Profile(2, {"max_steps": 400, "check_every": 10, "free_counts": [0, 2], "teacher_counts": [1, 2],
                             "prm_Ns": [4, 8], "prm_teachers": [1, 2], "pg_free": [1], "pg_teachers": [2],
                             "pg_steps": 40, "orm_N": 6}),
        "gpu": Profile(64, {"orm_N": 12, "free_counts": [0, 1, 2, 3, 4, 5, 6], "max_steps": 20000,
                            "prm_Ns": [4, 8, 16, 32], "teacher_counts": [1, 2, 4, 8, 16]}, "64 seeds, k^N = 4096"),
    }

    def sweeps(self, config):
        items = _items(config)
        yield Sweep("orm_free", _orm_run(items, "free"), {"size": config["free_counts"]})
        yield Sweep("orm_teachers", _orm_run(items, "teachers"), {"size": config["teacher_counts"]})
        yield Sweep("prm", _prm_run(items), {"length": config["prm_Ns"], "size": config["prm_teachers"]})
        yield Sweep("pg_free", _pg_run(items, "free"), {"size": config["pg_free"]})
        yield Sweep("pg_teachers", _pg_run(items, "teachers"), {"size": config["pg_teachers"]})

    summarise = staticmethod(summary_of)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary):
        return text(summary) + "\n" + self.timing_line(summary)
