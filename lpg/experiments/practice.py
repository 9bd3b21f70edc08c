"""``practice``: the practice of LLM post-training against the base-model barrier (issue 14, Q5).

Question. ``barrier`` shows that on-policy PG with the outcome reward (ORM) cannot lift the
mixture centres its pre-trained base model ``q0`` essentially never answers correctly
(off-support: ``q0(y*|x) < 1e-12``), while the process reward (PRM) lifts most of them. Do
the tools of LLM practice change that without a process verifier, and at what query cost?
On ``barrier``'s setup (its teacher, pre-training, centres and well-posedness, imported
from :mod:`lpg.experiments.barrier`) every seed post-trains the same ``q0`` with seven
variants for the same number of steps (:mod:`lpg.practice` for the objects):

* ``orm``: the ORM of ``barrier`` (0/1, batch-mean baseline, on-policy);
* ``orm_kl``: the ORM with a KL penalty towards ``q0`` (coefficient ``kl_beta``; per-sample
  reward shaping ``r − β log(p_w/q0)``, unbiased for ``E r − β KL(p_w‖q0)``);
* ``orm_entropy``: the ORM with an entropy bonus (``entropy_alpha``; ``r − α log p_w``);
* ``orm_tau``: the ORM sampling from the tempered policy ``p_{w/τ}`` (``tau``), the
  untempered score ``∇log p_w`` on those samples, no importance ratio;
* ``partial``: a dense outcome-type reward, the fraction of positions where ``y`` agrees
  with ``y*``, with the batch-mean baseline (one query per position checked: ``N`` per
  response);
* ``prm``: the PRM of ``barrier`` (0/1 prefix rewards, no baseline, exact event path);
* ``prm_rtg``: the PRM with reward-to-go ``Σ_{j≥i} r_j`` (``max(L − i, 0)`` on ``y*``'s
  correct prefix of length ``L``), same queries, exact event path.

Per off-support centre, pooled over seeds and split as in ``barrier`` into well-posed and
ambiguous centres: is it *lifted* (final ``p_w(y*|x) > 1e-3``)? Reported as counts (and
per seed), the pooled fraction with a seed-bootstrap 95% interval, and every variant's
total reward queries (log10, mean over seeds with its interval).

Prediction (derived before running at the defaults).

* KL penalty. Its gradient adds ``−β E[(log p_w/q0)∇log p_w]``, which vanishes at ``p_w = q0``
  and pulls back towards ``q0``: it never raises the chance of sampling ``y*`` above what the
  ORM's own update gives. A centre the ORM cannot find stays unfound: ``orm_kl`` lifts no
  more off-support centres than ``orm``.
* Entropy bonus. It is a KL penalty towards the uniform policy, whose chance of ``y*`` is
  ``k^−N`` (``16^−128 ≈ 10^−154`` here), below every off-support centre's: no more than
  ``orm`` either.
* Temperature. Per token ``Σ_y p(y)^{1/τ} ≥ 1`` for ``τ ≥ 1``, so the tempered chance of
  ``y*`` is at most ``q0(y*|x)^{1/τ}``: a power of the likelihood, still exponentially small
  in ``N`` when the likelihood is (``(c^N)^{1/τ} = c^{N/τ}``). With ``n`` samples of a
  centre's component, a centre of base likelihood ``10^−L`` needs ``τ ≳ L/log10 n`` to be
  found at all; at ``τ = 2`` and ``n ≈ pg_steps·pg_batch/M = 2000`` at the defaults only
  ``q0 ≳ 10^−6.6`` can be found, above the off-support threshold: no more than ``orm``. (The run records every
  centre's tempered base likelihood to check this bound's premise.)
* Partial credit. Its expected update is a sum over positions of
  ``E[(1[y_i = y*_i] − b)∇log p_w(y)]``: position ``i`` is credited with the chance of
  its own token along the sampled prefix, not with the chance of the whole response, so
  (like the PRM) its cost is governed per token, not by ``q0(y*|x)``; and a correct token at
  a fork is credited with every later position it puts back on ``y*``'s chain. Predicted to
  lift off-support centres: at least half of the well-posed ones — at ``N`` queries per
  response, at least as many queries as the PRM's.
* Reward-to-go. With 0/1 prefix rewards it only reweights the PRM's update on ``y*``'s
  correct prefix (weight ``L − i`` instead of 1; early tokens more): the same events, the
  same queries. Predicted to lift like the PRM: at least 80% of the well-posed
  off-support centres.

Acceptance tests (``summary["verdict"]``, on the well-posed off-support centres pooled
over the default seeds): ``orm_kl``, ``orm_entropy`` and ``orm_tau`` each lift at most
10 percentage points more of them than ``orm``; ``partial`` lifts at least 50%;
``prm_rtg`` lifts at least 80%; and there are at least 10 such centres.

The defaults (``barrier``'s setup with a third of its PG budget: 1000 steps of batch 64, for
the CPU budget with seven variants; ``β``, ``α``, ``τ``) and the predictions were fixed before
any run of this experiment; a ``barrier`` run at that budget (seeds 0..7) then checked that
the PRM, the positive control, still lifts the well-posed off-support centres. The run also
reports every variant's test error and its *success* rate (the fraction of PG samples that
were ``y*``), which says whether a variant learnt anything at all.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import numpy as np

import lpg
from lpg import plotting
from lpg.experiments import barrier
from lpg.practice import PartialCredit, RegularisedPG, RewardToGo, Tempered, scaled
from lpg.problem import evaluate
from lpg.metrics import sequence_log_likelihoods
from lpg.results import summarise
from lpg.spec import Choices, Experiment, Int, Profile, Real, Sweep, with_defaults

LN10 = math.log(10.0)
LIFT = barrier.LIFT
VARIANTS = ("orm", "orm_kl", "orm_entropy", "orm_tau", "partial", "prm", "prm_rtg")
ORM_FAMILY = ("orm_kl", "orm_entropy", "orm_tau")
LABELS = {"orm": "ORM", "orm_kl": "ORM + KL to q0", "orm_entropy": "ORM + entropy bonus",
          "orm_tau": "ORM at temperature τ", "partial": "partial credit", "prm": "PRM",
          "prm_rtg": "PRM, reward-to-go"}
COLORS = {"orm": "#c0392b", "orm_kl": "#e67e22", "orm_entropy": "#8e44ad", "orm_tau": "#d35400",
          "partial": "#27ae60", "prm": "#1f5fa8", "prm_rtg": "#16a085"}
MARGIN, PARTIAL_MIN, RTG_MIN, MIN_CENTRES = 0.10, 0.5, 0.8, 10

SETTINGS = {
    **with_defaults(barrier.SETTINGS, k=16, sigma=0.02, n_test=256, pretrain_steps=40, pg_steps=1000, pg_batch=64,
                    log_every=100, signed=False),
    "kl_beta": Real(0.05, "KL penalty coefficient β towards the base model (orm_kl)", low=0.0),
    "entropy_alpha": Real(0.005, "entropy bonus coefficient α (orm_entropy)", low=0.0),
    "tau": Real(2.0, "sampling temperature τ (orm_tau)", low=0.0, open_low=True),
    "n_boot": Int(2000, "bootstrap resamples of the intervals", low=1),
    "variants": Choices(list(VARIANTS), "variants to run ('orm', the reference, must be one)", VARIANTS),
}


def _has_orm(config: dict) -> str | None:
    if "orm" not in config["variants"]:
        return f"variants must include 'orm' (the reference), got {config['variants']}"
    return None


def algorithms(config: dict) -> dict[str, lpg.PolicyGradient]:
    """The variants of the module docstring named in ``variants``, ``barrier``'s optimiser and loss."""
    orm = dict(advantage=config["orm_baseline"], batch_size=config["pg_batch"],
               optimizer=barrier.pg_optimizer(config), loss_norm=config["loss_norm"])
    prm = {**orm, "advantage": config["prm_baseline"]}
    outcome, process = lpg.rewards.Outcome(signed=config["signed"]), lpg.rewards.Process(signed=config["signed"])
    make = {
        "orm": lambda: lpg.PolicyGradient(outcome, **orm),
        "orm_kl": lambda: RegularisedPG(outcome, beta=config["kl_beta"], **orm),
        "orm_entropy": lambda: RegularisedPG(outcome, alpha=config["entropy_alpha"], **orm),
        "orm_tau": lambda: lpg.PolicyGradient(outcome, behaviour=Tempered(config["tau"]), **orm),
        "partial": lambda: lpg.PolicyGradient(PartialCredit(), **orm),
        "prm": lambda: lpg.PolicyGradient(process, **prm),
        "prm_rtg": lambda: lpg.PolicyGradient(RewardToGo(process), **prm),
    }
    return {v: make[v]() for v in VARIANTS if v in config["variants"]}


def make_run(config: dict):
    """``run(key) -> dict`` of one seed: ``barrier``'s base model and centres, their
    well-posedness, the tempered base likelihood of every centre and each variant's
    curves. ORM-type variants share the ORM's PG key, PRM-type the PRM's (paired)."""
    return _make_run(tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in config.items())))


@functools.lru_cache(maxsize=8)
def _make_run(items: tuple):
    config = dict(items)
    config["variants"] = list(config["variants"])
    algs = algorithms(config)

    def run(key):
        task, problem, (k_orm, k_prm) = barrier.seed_setup(config, key)
        base = problem.base
        ev = evaluate(problem, base)
        tempered = sequence_log_likelihoods(problem.fmap, scaled(base, 1.0 / config["tau"]), problem.track_x,
                                            problem.track_y, problem.length)
        hyper = lpg.hyper(lr=config["pg_lr"])
        curves = {}
        for name, alg in algs.items():
            k = k_prm if name.startswith("prm") else k_orm
            c = lpg.train(alg, problem, hyper, k, steps=config["pg_steps"], log_every=config["log_every"]).curves
            curves[name] = {"step": c.step, "test_error": c.test_error, "track_log_lik": c.track_log_lik,
                            "log_queries": c.log_queries, "success": c.success}
        count = barrier.wellposed_count(task, jax.random.fold_in(key, barrier.WELLPOSED_STREAM), config["n_wellposed"])
        return {"base_test_error": ev.test_error, "base_track_log_lik": ev.track_log_lik,
                "base_tempered_log_lik": tempered, "wellposed_count": count, "curves": curves}

    return run


def pooled_fraction(lifted: np.ndarray, mask: np.ndarray, *, n_boot: int, seed: int = 0) -> dict:
    """``Σ lifted / Σ mask`` over ``(S, M)`` arrays, with a percentile-bootstrap 95%
    interval over seeds (resampled whole); ``nan`` for an empty mask."""
    hit, n = (lifted & mask).sum(axis=1).astype(np.float64), mask.sum(axis=1).astype(np.float64)
    if n.sum() == 0:
        return {"fraction": float("nan"), "ci95": [float("nan")] * 2}
    idx = np.random.default_rng(seed).integers(0, len(n), size=(n_boot, len(n)))
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = hit[idx].sum(axis=1) / n[idx].sum(axis=1)
    boot = boot[np.isfinite(boot)]
    return {"fraction": float(hit.sum() / n.sum()), "ci95": [float(np.quantile(boot, 0.025)),
                                                            float(np.quantile(boot, 0.975))]}


def summary_of(table, config: dict) -> dict:
    groups = barrier.centre_groups(table, config)
    base = barrier.base_log_lik(table)
    tempered = table.where(series="orm").per_run("base_tempered_log_lik").astype(np.float64)
    off = groups["well_posed"] | groups["ambiguous"]
    per_variant, queries, test_error, success = {}, {}, {"base": summarise(
        table.where(series="orm").per_run("base_test_error"), n_boot=config["n_boot"])}, {}
    variants = [v for v in VARIANTS if v in config["variants"]]
    for v in variants:
        last = table.where(series=v, step=-1)
        final = last["track_log_lik"].astype(np.float64)
        lifted = final > math.log(LIFT)
        per_variant[v] = {}
        for g, mask in groups.items():
            per_variant[v][g] = {"n": int(mask.sum()), "lifted": int((lifted & mask).sum()),
                                 "lifted_per_seed": (lifted & mask).sum(axis=1).tolist(),
                                 **pooled_fraction(lifted, mask, n_boot=config["n_boot"]),
                                 "median_final": float(np.median(final[mask]) / LN10) if mask.any() else float("nan"),
                                 "median_change": (float(np.median(final[mask] - base[mask]) / LN10)
                                                   if mask.any() else float("nan"))}
        queries[v] = summarise(last["log_queries"].astype(np.float64) / LN10, n_boot=config["n_boot"])
        test_error[v] = summarise(last["test_error"], n_boot=config["n_boot"])
        rate = np.nanmean(table.where(series=v).by_run("success")[:, 1:], axis=1)  # point 0 has none
        success[v] = summarise(rate, n_boot=config["n_boot"])
    wp = {v: per_variant[v]["well_posed"]["fraction"] for v in variants}
    n_wp = int(groups["well_posed"].sum())
    has = n_wp >= MIN_CENTRES
    samples = config["pg_steps"] * config["pg_batch"] / config["n_centres"]
    checks = {**{f"{v}_lifts_at_most_orm_plus_10pts": (v, lambda f: f <= wp["orm"] + MARGIN) for v in ORM_FAMILY},
              "partial_lifts_at_least_50pct": ("partial", lambda f: f >= PARTIAL_MIN),
              "prm_rtg_lifts_at_least_80pct": ("prm_rtg", lambda f: f >= RTG_MIN)}
    verdict = {name: bool(has and ok(wp[v])) for name, (v, ok) in checks.items() if v in wp}
    verdict["at_least_10_well_posed_centres"] = bool(has)
    return {
        "threshold": config["off_support_threshold"], "lift": LIFT,
        "n_off_support": {"well_posed": n_wp, "ambiguous": int(groups["ambiguous"].sum()),
                          "per_seed": off.sum(axis=1).tolist()},
        "per_variant": per_variant,
        "queries": queries,
        "test_error": test_error,
        "success": success,
        "tempered": {"tau": config["tau"], "samples_per_centre": samples,
                     "off_support_findable": int((off & (tempered > -math.log(samples))).sum()),
                     "median_log10": float(np.median(tempered[off]) / LN10) if off.any() else float("nan"),
                     "max_log10": float(np.max(tempered[off]) / LN10) if off.any() else float("nan"),
                     "bound_holds": bool(np.all(tempered[off] <= base[off] / config["tau"] + 1e-3))},
        "verdict": verdict,
        "units": {
            "per_variant": "off-support centres (base likelihood < threshold) pooled over seeds, split as barrier "
                           "does; lifted: final likelihood > lift; fraction: pooled lifted/n with a seed-bootstrap "
                           "95% interval; median_final, median_change: log10",
            "queries": "log10 of a run's total reward queries (mean over seeds, bootstrap 95% interval)",
            "test_error": "err(w) on the test set at the end of training (base: before), mean over seeds",
            "success": "fraction of PG contexts whose sampled response was y* (on the event path: whose event "
                       "succeeded), over the whole run, mean over seeds",
            "tempered": "off-support centres' base likelihood at temperature tau (log10); findable: tempered "
                        "likelihood above 1/samples_per_centre (samples of its component over the run)",
        },
    }


def _ci(st: dict) -> str:
    return f"{st['mean']:.3f} [{st['ci95'][0]:.3f}, {st['ci95'][1]:.3f}]"


def _missing(x) -> bool:
    """``nan``, or ``None`` once read back from JSON."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pow10(x) -> str:
    return "n/a" if _missing(x) else f"10^{x:.1f}"


def _pct(x) -> str:
    return "n/a" if _missing(x) else f"{100 * x:.0f}%"


def text(summary: dict) -> str:
    n = summary["n_off_support"]
    rows = [("variant", "well-posed lifted", "95% CI", "per seed", "ambiguous lifted", "median final",
             "queries (log10)", "test error", "success")]
    for v in (v for v in VARIANTS if v in summary["per_variant"]):
        pv, q = summary["per_variant"][v], summary["queries"][v]
        wp, am = pv["well_posed"], pv["ambiguous"]
        ci = wp["ci95"]
        rows.append((v, f"{wp['lifted']}/{wp['n']} ({_pct(wp['fraction'])})", f"[{_pct(ci[0])}, {_pct(ci[1])}]",
                     ",".join(map(str, wp["lifted_per_seed"])), f"{am['lifted']}/{am['n']}",
                     _pow10(wp["median_final"]),
                     f"{q['mean']:.2f} [{q['ci95'][0]:.2f}, {q['ci95'][1]:.2f}]", _ci(summary["test_error"][v]),
                     _ci(summary["success"][v])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    t = summary["tempered"]
    lines = [f"off-support centres (base likelihood < {summary['threshold']:g}): {n['well_posed']} well-posed, "
             f"{n['ambiguous']} ambiguous over {len(n['per_seed'])} seeds; lifted: final likelihood > "
             f"{summary['lift']:g}",
             *("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows),
             f"temperature {t['tau']:g}: off-support centres' tempered base likelihood median "
             f"{_pow10(t['median_log10'])}, max {_pow10(t['max_log10'])}; findable in "
             f"{t['samples_per_centre']:.0f} samples: {t['off_support_findable']}; bound q^(1/tau) holds: "
             f"{t['bound_holds']}; base test error "
             f"{_ci(summary['test_error']['base'])}",
             "checks: " + "; ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in summary["verdict"].items())]
    return "\n".join(lines)


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    """Three panels: the fraction of the well-posed off-support centres above ``1e-3``
    over PG steps, per variant; that fraction at the end against the run's reward
    queries (mean over seeds, 95% intervals); every off-support centre's tempered base
    likelihood against its base likelihood, with the bound ``q0^{1/τ}`` and ``1/n``."""
    groups = barrier.centre_groups(table, config)
    wp = groups["well_posed"]
    fig, ax = plotting.figure(3, 1, width=4.6, height=3.6)
    for v in (v for v in VARIANTS if v in config["variants"]):
        rows = table.where(series=v)
        step, ll = rows.by_run("step")[0], rows.by_run("track_log_lik").astype(np.float64)  # (S, P, M)
        if wp.any():
            ax[0].plot(step, (ll.transpose(0, 2, 1)[wp] > math.log(LIFT)).mean(axis=0), color=COLORS[v],
                       label=LABELS[v], ls="--" if v.startswith("prm") else "-")
        s, q = summary["per_variant"][v]["well_posed"], summary["queries"][v]
        if s["n"]:
            err = lambda mid, ci: [[max(mid - ci[0], 0.0)], [max(ci[1] - mid, 0.0)]]  # noqa: E731
            ax[1].errorbar(q["mean"], s["fraction"], xerr=err(q["mean"], q["ci95"]), yerr=err(s["fraction"], s["ci95"]),
                           fmt="o", color=COLORS[v], label=LABELS[v], capsize=2)
    base = barrier.base_log_lik(table) / LN10
    tempered = table.where(series="orm").per_run("base_tempered_log_lik").astype(np.float64) / LN10
    off = groups["well_posed"] | groups["ambiguous"]
    ax[2].scatter(base[off], tempered[off], s=12, color=COLORS["orm_tau"], label="off-support centres")
    if off.any():
        xs = np.linspace(base[off].min(), 0.0, 50)
        ax[2].plot(xs, xs / config["tau"], color="0.4", ls="--", label="bound $q_0^{1/\\tau}$")
    ax[2].axhline(-math.log10(summary["tempered"]["samples_per_centre"]), color="0.5", ls=":",
                  label="1 / samples per centre")
    ax[0].set(title="well-posed off-support centres lifted", xlabel="policy-gradient step",
              ylabel=f"fraction with $p_w(y^*|x) > {LIFT:g}$", ylim=(-0.03, 1.03))
    ax[1].set(title="lifted vs reward queries", xlabel="reward queries of a run", ylabel="fraction lifted (pooled)",
              ylim=(-0.03, 1.03))
    ax[2].set(title=f"tempered base likelihood (τ = {config['tau']:g})", xlabel="base likelihood $q_0(y^*|x)$",
              ylabel="tempered likelihood of $y^*$")
    plotting.log10_axis(ax[1], "x")
    plotting.log10_axis(ax[2], "x")
    plotting.log10_axis(ax[2])
    for a in ax:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=6, loc="best")
    title = (f"{name}: practice of post-training on barrier's setup — N={config['N']}, k={config['k']}, "
             f"M={config['n_centres']}, {config['pg_steps']} steps of batch {config['pg_batch']}, "
             f"{base.shape[0]} seeds; β={config['kl_beta']:g}, α={config['entropy_alpha']:g}, τ={config['tau']:g}")
    return plotting.save(fig, out_dir, name, title)


class Practice(Experiment):
    name = "practice"
    description = ("Q5: LLM practice on the barrier: KL to base, entropy bonus, temperature, partial credit, "
                   "reward-to-go; which lifts off-support centres without a process verifier")
    claims = ("Q5",)
    settings = SETTINGS
    constraints = (*barrier.CONSTRAINTS, _has_orm)
    default_seeds = 16
    profiles = {"gpu": Profile(128, {"pg_steps": 3000, "pg_batch": 128, "n_test": 512},
                               "barrier's PG budget, 128 seeds"),
                "quick": Profile(2, {"pg_steps": 100, "pg_batch": 16, "log_every": 50, "n_test": 64, "n_boot": 200})}

    def sweeps(self, config):
        vmap_size = {-1: "auto", 0: None}.get(config["vmap_size"], config["vmap_size"])
        yield Sweep("runs", make_run(config), vmap_size=vmap_size)

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary):
        return text(summary) + "\n" + self.timing_line(summary)
