"""``scaling-alpha`` and ``scaling-eps``: reward queries vs the base model's likelihood
``α`` and vs the target ``ε`` on the planted α family (claims C2 and C3, PAPER.md §4).

Planted task (:func:`lpg.make_planted`, margin exactly ``γ``) and a base model that puts
likelihood exactly ``α`` on ``y*`` for every context (:func:`lpg.tasks.planted_alpha_base`),
so ``Q_{q0}(ε) = α`` for every ``ε``. Measured: queries until ``p_w(y*|x) ≥ 1 − ε`` on
every context (:mod:`lpg.hitting`), for

* Algorithm 1 (best-of-m with the outcome reward, ``m = min(⌈1/α⌉, k^N)``): C3,
  ``Q = Õ((1/α + 1/ε)/γ²)``, minimax;
* on-policy PG with the 0/1 outcome reward, one sample per iteration (so queries =
  iterations): C2, ``E[p(y*)] ≥ 1 − Õ(1/(π_α α γ² T))``.

``scaling-alpha`` sweeps ``α`` from 1e-1 to 1e-6 at ``ε = 0.1``: slope −1 in ``α`` where
``1/α ≫ 1/ε`` (C3; C2: iterations ``∝ 1/α``); the lower bound C6, ``Ω̃(1/(α γ²))``, is
drawn without a fitted constant. ``k^N = 4^12 ≈ 1.7·10^7 > 1/α`` for every ``α``, so
``m = ⌈1/α⌉`` is never capped. PG needs ``~1/α`` sequential iterations: its CPU default
stops a decade earlier (the ``gpu`` profile goes to 1e-6).

``scaling-eps`` sweeps ``ε`` from 1e-1 to 1e-4 (two values per decade) at ``α = 0.5``:
slope −1 in ``ε`` where ``1/ε ≫ 1/α`` (C3 for Algorithm 1; C2: ``Õ(1/(α γ² ε))``
iterations at fixed ``α``). ``ε`` stops at 1e-4: the target ``log p ≥ log(1 − ε)`` is
checked in float32, whose rounding of a 12-token log-likelihood (``~10⁻⁶``) stays well
below ``ε`` there.

The regime is fixed by the settings, not by the data: the swept values where the swept
term dominates the other by the factor ``D = dominance`` (default 100): ``1/α ≥ D/ε``
(``α ≤ 1e-3`` at ``ε = 0.1``), ``1/ε ≥ D/α`` (``ε ≤ 5·10⁻³`` at ``α = 0.5``).
Acceptance: slope in ``[−1.25, −0.75]``.

Both readings of the adaptive step (``step_units``; PAPER.md §3 leaves open which gradient
it follows): ``response``, the paper's, one step on the accepted (Algorithm 1) or rewarded
(PG) response's gradient, and ``token``, one adaptive step per token of it, in order
(``step_unit`` of :class:`lpg.BestOfM` and :class:`lpg.PolicyGradient`). Each runs the same
test and its slope record names its reading (``reading``; ``*_token_*`` for the second). A
slope confirmed under one reading only is ``conditional (on …)`` it
(:func:`lpg.analysis.mark_conditional`); ``summary.verdict`` states each claim under each
reading and overall (``confirmed`` when both pass). The per-token reading costs more per
iteration (``N`` sequential steps; 3–4 times a PG iteration), so it has its own, smaller
grids (``orm_token_*s``, ``pg_token_*s``): PG's ``α`` stops at ``3.16e-5`` with half
decades (four values in the regime), both algorithms' ``ε`` at ``3.16e-4`` (three).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.lines import Line2D

import lpg
from lpg import plotting
from lpg.algorithms.base import READINGS
from lpg.analysis import (checks_line, claim_under_readings, fit_record, fmt_slope, mark_conditional, slopes_table,
                          under_reading)
from lpg.features import max_planted_contexts
from lpg.hitting import likelihood_at_least, run_until
from lpg.metrics import sequence_log_likelihoods
from lpg.problem import planted_problem
from lpg.spec import Choices, Experiment, Int, PER_POINT, Profile, Real, Reals, Sweep, common, divides
from lpg.theory import orm_log_m

LN10 = math.log(10.0)
ALGS = ("orm", "pg")
LABEL = {"orm": "Alg. 1 (best-of-m, ORM)", "pg": "on-policy PG (0/1 outcome)"}
CLAIM = {"orm": "C3", "pg": "C2"}
STEP_UNITS = tuple(READINGS)  # the paper's reading first
COLOR = {"orm": plotting.COLORS["orm"], "pg": "#6c3483"}
EPS_GRID = [1e-1, 3.16e-2, 1e-2, 3.16e-3, 1e-3, 3.16e-4, 1e-4]
TOKEN_EPS_GRID = [1e-1, 1e-2, 3.16e-3, 1e-3, 3.16e-4]
"""The per-token reading's ε (both algorithms): its iterations cost more, so ``1e-4``, whose
runs are two thirds of the cost, is left out; three values stay in the regime."""
PG_TOKEN_ALPHAS = [1e-1, 1e-2, 1e-3, 3.16e-4, 1e-4, 3.16e-5]
"""PG's α under the per-token reading: ``1e-5``, nine tenths of PG's cost, is replaced by
half decades down to ``3.16e-5``; four values stay in the regime."""


def family_algorithm(name: str, batch_size: int, step_unit: str = "response"):
    """Algorithm 1 (:class:`lpg.BestOfM`) or on-policy PG with the 0/1 outcome reward
    (:class:`lpg.PolicyGradient`, exact event path), both with the adaptive step read as
    ``step_unit``."""
    if name == "orm":
        return lpg.BestOfM(batch_size=batch_size, step_unit=step_unit)
    return lpg.PolicyGradient("outcome", batch_size=batch_size, event_path=True, step_unit=step_unit)


def part_name(alg: str, unit: str) -> str:
    """A sweep's (and a series') name: the algorithm, ``_token`` for the per-token reading."""
    return alg if unit == "response" else f"{alg}_{unit}"


def planted_alpha_runner(config: dict, alg_name: str, step_unit: str = "response"):
    """``fn(key, log_alpha, eps)``: one run from the planted base with likelihood exactly
    ``α`` on ``y*`` for every context, until the likelihood is ``≥ 1 − ε`` on every
    context. ``α`` and ``ε`` are traced (one compile per algorithm and reading). Every
    context has base likelihood ``α``, so ``Q_{q0}(ε) = α`` and Algorithm 1's
    ``m = min(⌈1/α⌉, k^N)``."""
    k, N = config["k"], config["N"]
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=k, N=N, gamma=config["gamma"],
                            n_contexts=config["n_contexts"])
    alg = family_algorithm(alg_name, config["batch_size"], step_unit)
    max_steps, check_every = config[f"{alg_name}_max_steps"], config[f"{alg_name}_check_every"]

    def run(key, log_alpha, eps):
        w0 = lpg.tasks.planted_alpha_base(task, jnp.exp(log_alpha))
        problem = planted_problem(task, key=jax.random.PRNGKey(0), base=w0)
        log_q = jnp.min(sequence_log_likelihoods(problem.fmap, w0, problem.track_x, problem.track_y))
        log_m = orm_log_m(log_q, N, k) if alg_name == "orm" else jnp.inf
        hyper = lpg.Hyper(jnp.float32(1.0), jnp.asarray(log_m, jnp.float32), jnp.float32(jnp.inf))
        hit = run_until(alg, problem, hyper, key, max_steps=max_steps, target=likelihood_at_least(eps),
                        check_every=check_every)
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_q0": log_q, "log_m": log_m}

    return run


def _contexts_fit(c: dict) -> str | None:
    s_max = max_planted_contexts(c["k"], c["gamma"])
    if c["n_contexts"] > s_max:
        return f"n_contexts must be at most k/((k-1)*gamma^2) = {s_max}, got {c['n_contexts']}"


def swept_values(table, config: dict, swept: str) -> np.ndarray:
    """Each run's ``α`` or ``ε``, snapped back to the configured values (the grid is
    float32, so ``exp(log α)`` is not exactly the configured ``α``)."""
    x = np.asarray(np.exp(table["log_alpha"]) if swept == "alpha" else table["eps"], np.float64)
    configured = np.array(sorted({v for a in config["algs"] for u in config["step_units"]
                                  for v in values_of(config, a, u, swept)}), np.float64)
    return configured[np.argmin(np.abs(np.log(x[:, None]) - np.log(configured[None])), axis=1)]


def family_regime(config: dict, swept: str) -> list[float]:
    """The regime of the claim, fixed by the settings: the swept values where its term
    dominates the other by the factor ``dominance`` (``1/α ≥ D/ε`` for α, ``1/ε ≥ D/α``
    for ε)."""
    fixed = config["eps"] if swept == "alpha" else config["alpha"]
    return [0.0, fixed / config["dominance"]]


def series(table, alg: str, unit: str) -> np.ndarray:
    """The rows of one algorithm under one reading of the step."""
    return (table["alg"] == alg) & under_reading(table, unit)


def family_summary(table, config: dict, swept: str, claims: list[str]) -> dict:
    regime, x = family_regime(config, swept), swept_values(table, config, swept)
    slopes, by_claim = {}, {}
    for alg in config["algs"]:
        claim = CLAIM[alg]
        for unit in config["step_units"]:
            sel = series(table, alg, unit)
            rec = slopes[f"{part_name(alg, unit)}_queries_vs_{swept}"] = fit_record(
                x[sel], table["log_queries"][sel], ~table["hit"][sel], theory=-1.0, accept=(-1.25, -0.75),
                log_x=True, log_y=False, regime=regime, n_boot=config["n_boot"], claim=claim,
                note=f"log-log slope of queries vs {swept} where the {swept} term dominates "
                     f"({swept} <= {regime[1]:.3g}); queries = iterations x batch for PG; {READINGS[unit]}")
            rec["reading"] = unit
            by_claim.setdefault(claim, {})[READINGS[unit]] = [rec]
        mark_conditional({r: recs[0] for r, recs in by_claim[claim].items()})
    verdicts = {}
    for claim, by_reading in by_claim.items():
        verdicts.update(claim_under_readings(claim, by_reading))
    return {
        "experiment": f"scaling-{swept}",
        "claims": claims,
        "slopes": slopes,
        "verdict": verdicts,
        "regime_rule": (f"1/alpha >= {config['dominance']:g}/eps" if swept == "alpha"
                        else f"1/eps >= {config['dominance']:g}/alpha"),
        "censored_runs": int(np.sum(~table["hit"])),
        "runs": int(table["hit"].size),
    }


def family_figure(table, config: dict, summary: dict, out_dir: Path, swept: str, name: str, title: str):
    fig, (ax,) = plotting.figure(1, width=5.6, height=4.4)
    regime, x_all, gamma = family_regime(config, swept), swept_values(table, config, swept), config["gamma"]
    all_x = np.unique(x_all)
    for alg, unit in [(a, u) for a in config["algs"] for u in config["step_units"]]:
        sel, color, token = series(table, alg, unit), COLOR[alg], unit == "token"
        xs, med = plotting.scaling_series(ax, x_all[sel], table["log_queries"][sel] / LN10, ~table["hit"][sel],
                                          label=LABEL[alg] + (", per-token step" if token else ""), color=color,
                                          ls="-." if token else "-", marker="D" if token else "o", jitter=0.05)
        rec = summary["slopes"][f"{part_name(alg, unit)}_queries_vs_{swept}"]
        in_reg = (xs >= regime[0]) & (xs <= regime[1])
        if in_reg.sum() >= 1:
            plotting.theory_overlay(ax, xs[in_reg], med[in_reg], -1.0, color=color, ls=":" if token else "--",
                                    label=f"slope −1 (fitted{', per token' if token else ''}: {fmt_slope(rec)})")
        if alg == "orm" and not token:
            # the shape of C3, (1/α + 1/ε)/γ², with its constant fitted to the medians
            a = xs if swept == "alpha" else np.full_like(xs, config["alpha"])
            e = xs if swept == "eps" else np.full_like(xs, config["eps"])
            shape, ok = np.log(1 / a + 1 / e), np.isfinite(med)
            if ok.any():
                c = np.mean(med[ok] * LN10 - shape[ok])
                ax.plot(xs, (c + shape) / LN10, ls="-.", color=color, lw=1.0, alpha=0.8,
                        label="C3 shape (1/α + 1/ε)/γ², fitted constant")
    if swept == "alpha":
        plotting.lower_bound_overlay(ax, all_x, np.log10(1.0 / (all_x * gamma**2)),
                                     label="lower bound 1/(α γ²) (C6)")
    ax.axvspan(all_x.min() / 1.5, regime[1], color="#f2f2f2", zorder=0, lw=0)
    ax.set_xscale("log")
    plotting.log10_axis(ax)
    ax.invert_xaxis()
    ax.set_xlabel("base likelihood α" if swept == "alpha" else "target ε (likelihood ≥ 1−ε)")
    ax.set_ylabel("reward queries to likelihood ≥ 1−ε")
    handles, _ = ax.get_legend_handles_labels()
    handles += [plotting.censored_legend_handle(), Line2D([], [], lw=6, color="#f2f2f2", label="fitted regime")]
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper left")
    ax.grid(alpha=0.25, which="both")
    fixed = f"ε = {config['eps']:g}" if swept == "alpha" else f"α = {config['alpha']:g}"
    ax.set_title(f"{title}\nplanted task k={config['k']}, N={config['N']}, γ={gamma:g}, {fixed}; "
                 f"{int(table['seed'].max()) + 1} seeds", fontsize=9)
    return plotting.save(fig, out_dir, name)


def values_of(config: dict, alg: str, unit: str, swept: str) -> list[float]:
    """The swept values of one algorithm under one reading of the step (``{alg}_{swept}s``,
    or ``{alg}_token_{swept}s`` for the per-token reading)."""
    return list(config[f"{alg}_{swept}s" if unit == "response" else f"{alg}_{unit}_{swept}s"])


def family_settings(swept: str, fixed: float, orm_values: list, pg_values: list, budgets: tuple,
                    token_values: tuple[list, list]) -> dict:
    """The settings of one family experiment (``swept``: ``"alpha"`` or ``"eps"``);
    ``budgets``: ``(orm_max_steps, orm_check_every, pg_max_steps, pg_check_every)``;
    ``token_values``: Algorithm 1's and PG's values under the per-token reading."""
    other = "eps" if swept == "alpha" else "alpha"
    unit = dict(low=0.0, high=1.0, open_low=True, open_high=True)
    return {
        **common(k=4, N=12, gamma=0.5, batch_size=1, task_seed=0, n_boot=2000),
        "n_contexts": Int(2, "contexts of the planted task (at most k/((k-1) gamma^2))", low=1),
        other: Real(fixed, {"eps": "target: likelihood >= 1 - eps on every context",
                            "alpha": "base likelihood of y* on every context"}[other], **unit),
        f"orm_{swept}s": Reals(orm_values, f"values of {swept} for Algorithm 1", min_len=2, **unit),
        f"pg_{swept}s": Reals(pg_values, f"values of {swept} for on-policy PG", min_len=2, **unit),
        **{f"{alg}_token_{swept}s": Reals(v, f"values of {swept} for {LABEL[alg]} under the per-token reading of the "
                                             f"step (it costs more per iteration)", min_len=2, **unit)
           for alg, v in zip(ALGS, token_values)},
        "algs": Choices(list(ALGS), "algorithms: orm (Algorithm 1), pg (on-policy PG)", ALGS),
        "step_units": Choices(list(STEP_UNITS), "readings of the adaptive step: response (one step per response, the "
                              "paper's), token (one per token of the accepted/rewarded response)", STEP_UNITS),
        "orm_max_steps": Int(budgets[0], "Algorithm 1's iteration budget (runs that spend it are censored)", low=1),
        "orm_check_every": Int(budgets[1], "Algorithm 1's iterations between target checks", low=1),
        "pg_max_steps": Int(budgets[2], "PG's iteration budget (runs that spend it are censored)", low=1),
        "pg_check_every": Int(budgets[3], "PG's iterations between target checks", low=1),
        "dominance": Real(100.0, f"regime: where the {swept} term is at least this many times the other", low=1.0),
    }


class _Family(Experiment):
    """``scaling-alpha`` / ``scaling-eps``: set ``swept`` and ``figure_title``."""

    swept: str
    figure_title: str
    claims = ("C2", "C3")
    constraints = (divides("orm_check_every", "orm_max_steps"), divides("pg_check_every", "pg_max_steps"),
                   _contexts_fit)
    default_seeds = 16

    def sweeps(self, config):
        """One sweep per algorithm and reading of the step over the swept values, one
        chunk per value so each ``while_loop`` stops with its own slowest run."""
        for alg in config["algs"]:
            for unit in config["step_units"]:
                values = values_of(config, alg, unit, self.swept)
                if self.swept == "alpha":
                    grid = {"log_alpha": [math.log(v) for v in values], "eps": [config["eps"]]}
                else:
                    grid = {"log_alpha": [math.log(config["alpha"])], "eps": list(values)}
                yield Sweep(part_name(alg, unit), planted_alpha_runner(config, alg, unit), grid,
                            {"alg": alg, "step_unit": unit}, chunk_size=PER_POINT)

    def summarise(self, table, config):
        return family_summary(table, config, self.swept, list(self.claims))

    def draw(self, table, config, summary, out_dir):
        return family_figure(table, config, summary, out_dir, self.swept, self.name.replace("-", "_"),
                             self.figure_title)

    def text(self, summary: dict) -> str:
        return "\n".join([slopes_table(summary["slopes"]), f"regime: {summary['regime_rule']}",
                          f"censored runs: {summary['censored_runs']}/{summary['runs']}",
                          checks_line(summary.get("verdict") or {})])


class ScalingAlpha(_Family):
    name = "scaling-alpha"
    description = "C2, C3: queries to likelihood 1-eps vs base likelihood alpha (Alg. 1 and on-policy PG), slope -1"
    swept = "alpha"
    figure_title = "C2, C3: queries ∝ 1/α where 1/α ≫ 1/ε"
    settings = family_settings("alpha", 0.1, [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6], [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
                               (20000, 10, 3000000, 100), ([1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6], PG_TOKEN_ALPHAS))
    profiles = {
        "gpu": Profile(64, {"pg_alphas": "1e-1,1e-2,1e-3,1e-4,1e-5,1e-6", "pg_max_steps": "20000000",
                            "pg_token_alphas": "1e-1,1e-2,1e-3,1e-4,1e-5,1e-6"}),
        "quick": Profile(4, {"orm_alphas": "1e-1,1e-2,1e-3,1e-4", "pg_alphas": "1e-1,1e-2,1e-3", "n_boot": "300",
                             "orm_token_alphas": "1e-1,1e-2,1e-3,1e-4", "pg_token_alphas": "1e-1,1e-2,1e-3",
                             "dominance": "10"}),
    }


class ScalingEps(_Family):
    name = "scaling-eps"
    description = "C3: queries to likelihood 1-eps vs eps from a good base (Alg. 1 and on-policy PG), slope -1"
    swept = "eps"
    figure_title = "C3: queries ∝ 1/ε where 1/ε ≫ 1/α"
    settings = family_settings("eps", 0.5, EPS_GRID, EPS_GRID, (2000000, 100, 2000000, 100),
                               (TOKEN_EPS_GRID, TOKEN_EPS_GRID))
    profiles = {
        "gpu": Profile(64, {f"{alg}_token_epss": ",".join(map(str, EPS_GRID)) for alg in ALGS}),
        "quick": Profile(4, {"orm_epss": "1e-1,1e-2,1e-3", "pg_epss": "1e-1,1e-2,1e-3", "n_boot": "300",
                             "orm_token_epss": "1e-1,1e-2,1e-3", "pg_token_epss": "1e-1,1e-2,1e-3",
                             "dominance": "10"}),
    }
