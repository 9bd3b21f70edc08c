"""``baselines``: the advantage estimators of LLM practice do not escape the
Likelihood-Quantile barrier of outcome rewards (claims C4–C6, PAPER.md §3–4).

The paper's lower bound (C6) is over every ORM method, so no advantage estimator can
improve the worst-case ``1/(Q_{q0}(ε)γ²)`` rate. Here the estimators used in practice
run side by side on the same task from the same base models:

* ``none_01``: REINFORCE, 0/1 reward;
* ``none_pm1``: REINFORCE, ±1 reward (failures push their sample down);
* ``batch_mean_pm1``: ±1 reward minus the batch mean (the authors' ORM baseline);
* ``rloo_01``: leave-one-out mean of the group (RLOO), 0/1 reward;
* ``grpo_01``: group-normalised ``(r − mean)/std`` (GRPO), 0/1 reward (GRPO is invariant
  to an affine change of reward, so ±1 gives the same advantages).

All are on-policy :class:`lpg.PolicyGradient` on the *sampled* path (real responses,
since failures matter to every estimator but the first), ``batch_size`` contexts ×
``group_size`` samples per step, the paper's adaptive step. Task: the planted-margin
family (margin exactly ``γ``, ``S`` contexts, uniform); base model
:func:`lpg.tasks.planted_alpha_base` with ``q0(y*|x) = α`` on every context, so
``Q_{q0}(ε) = α`` exactly. Measured: reward queries until the exact error is ``≤ ε``
(:func:`lpg.hitting.run_until`; budget-censored runs are kept), and the fraction of
zero-variance groups (every sample in the group got the same reward; the step's
``aux["zero_var"]``), probed with ``n_probe`` independent steps at the base model and at
the weights where the run stopped. At the base it is exactly ``(1 − α)^G + α^G`` per
group, drawn as the reference: with a low LQ nearly every group fails together, and
RLOO and GRPO then have *zero* advantage — no update at all.

Why none can escape (in expectation): a baseline ``b`` that does not depend on the
sample adds ``E[b ∇log p_w(y|x)] = 0``, and ±1 rewards add ``−E[∇log p_w] = 0``; the mean
update is always ``∝ E[r ∇log p_w] = p_w(y*|x) ∇log p_w(y*|x)``, which vanishes with
the likelihood of ``y*``. (C6 is a worst case over instances, so an escape on this family
would not contradict it; it would show that an estimator's noise, not its mean update,
finds ``y*``.)

Measured slope. ``s_v``: the least-squares slope of ``ln(median queries)`` against
``ln(1/Q)`` over ``1/Q ≥ regime_min`` (Kaplan–Meier medians, bootstrap over seeds). The
cost is ``≈ A + B/Q`` (``A``: learning once successes arrive, independent of ``α``) times
the log factors ``Õ`` hides, so over any finite range the local slope of an estimator
that pays the barrier is *below* 1; a fixed threshold near 1 (say 0.75) then sits next
to the slope of estimators that cannot escape and separates little. The test therefore
measures each estimator against a reference run on the same tasks, seeds and ``α``.

Acceptance (stated before the data):

* **Reference** (record ``<ref>_vs_invQ``): the first estimator with 0/1 rewards in
  ``variants`` (``none_01`` at the defaults). With 0/1 rewards nothing moves before the
  first success on a context (REINFORCE's failures have reward 0, RLOO's and GRPO's
  all-fail groups advantage 0), so the first success costs ``Geometric(α)`` samples per
  context and the reference cannot escape by construction: its slope ``s_ref`` is what
  paying the barrier looks like over this range. The escape the test is built to detect
  is a cost growing like ``(1/Q)^β_e`` (``escape_exponent``, ``β_e = ½``: a square-root
  escape), whose local slope is at most ``β_e`` whatever its ``α``-free part (the local
  slope of ``A + B·x^β`` is ``β·Bx^β/(A + Bx^β) ≤ β``). Confirmed when the whole 95%
  interval of ``s_ref`` lies above ``β_e``: the range separates the two. Otherwise the
  escape tests below have nothing to separate and none is confirmed.
* **Escape test** (record ``<v>_escape_margin`` for every other estimator): the
  threshold ``τ = (s_ref + β_e)/2`` sits midway between paying the barrier (slope
  ``s_ref``) and the escape (slope ``≤ β_e``), a separation ``δ = (s_ref − β_e)/2`` from
  each. The statistic is the margin ``m_v = s_v − τ`` (theory: ``δ``, an estimator with
  the reference's shape), with a 95% interval from a *paired* bootstrap: within each
  ``α`` the same seeds are resampled for ``v`` and the reference (every estimator runs on
  the task and base model of its seed), so ``τ`` is re-estimated in every draw and the
  noise they share cancels. Confirmed (``v`` pays the barrier) when the whole interval is
  above 0; ``v`` *escapes* when the whole interval lies below 0 with every point of the
  regime estimable (a point with most runs censored is costlier, not cheaper, and
  dropping it would flatten the slope spuriously); otherwise inconclusive (not
  confirmed). Power: with ``σ_v`` the bootstrap standard deviation of ``m_v``, an
  estimator at either hypothesis (``m = +δ``, or ``m = −δ``: the square-root escape) gets
  the right verdict with probability ``≈ Φ(δ/σ_v − 1.96)`` (normal approximation),
  reported per estimator with ``δ`` and ``τ``.

The ``gpu`` profile extends ``α`` to 1e-5, where ``B/Q ≫ A`` and ``s_ref`` (so ``δ``) grows.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import plotting
from lpg.analysis import censored_median, fit_slope, fmt_slope, slope_record, slopes_table, verdict
from lpg.features import max_planted_contexts
from lpg.hitting import error_at_most, run_until
from lpg.problem import planted_problem
from lpg.spec import Choices, Experiment, Int, Profile, Real, Reals, Sweep, common, divides
from lpg.theory import zero_variance_probability

LN10 = math.log(10.0)
VARIANTS: dict[str, tuple[bool, str]] = {"none_01": (False, "none"), "none_pm1": (True, "none"),
                                          "batch_mean_pm1": (True, "batch_mean"), "rloo_01": (False, "rloo"),
                                          "grpo_01": (False, "grpo")}
"""Each estimator: (``±1`` reward, advantage)."""
LABELS = {"none_01": "none, 0/1", "none_pm1": "none, $\\pm 1$", "batch_mean_pm1": "batch mean, $\\pm 1$",
          "rloo_01": "RLOO, 0/1", "grpo_01": "GRPO, 0/1"}
COLORS = {"none_01": "#1f5fa8", "none_pm1": "#5dade2", "batch_mean_pm1": "#c0392b", "rloo_01": "#27ae60",
          "grpo_01": "#8e44ad"}


def _contexts_fit(config: dict) -> str | None:
    s_max = max_planted_contexts(config["k"], config["gamma"])
    if config["n_contexts"] > s_max:
        return f"n_contexts must be at most k/((k-1)*gamma^2) = {s_max}, got {config['n_contexts']}"


def algorithm(config: dict, variant: str) -> lpg.PolicyGradient:
    signed, advantage = VARIANTS[variant]
    return lpg.PolicyGradient(lpg.rewards.Outcome(signed=signed), advantage=advantage, event_path=False,
                              batch_size=config["batch_size"], group_size=config["group_size"])


def make_run(config: dict, variant: str):
    """``run(key, log10_alpha)``: queries until error ``≤ ε`` and the zero-variance
    fraction of ``n_probe`` independent steps at the base model and at the final weights."""
    alg = algorithm(config, variant)
    hyper = lpg.hyper()

    def probe(problem, w, key):
        state = alg.init(w, hyper)
        keys = jax.random.split(key, config["n_probe"])
        return jnp.mean(jax.vmap(lambda kk: alg.step(state, kk, problem, hyper)[1].aux["zero_var"])(keys))

    def run(key, log10_alpha):
        k_task, k_run, k_p0, k_p1 = jax.random.split(key, 4)
        task = lpg.make_planted(k_task, k=config["k"], N=config["N"], gamma=config["gamma"],
                                n_contexts=config["n_contexts"])
        w0 = lpg.tasks.planted_alpha_base(task, 10.0 ** jnp.asarray(log10_alpha, jnp.float32))
        problem = planted_problem(task, key=k_task, base=w0)
        log_lq = lpg.likelihood_quantile(lpg.tasks.log_alpha_planted_base(task, w0), config["eps"])
        hit = run_until(alg, problem, hyper, k_run, max_steps=config["max_steps"],
                        target=error_at_most(config["eps"]), check_every=config["check_every"])
        return {"hit": hit.hit, "steps": hit.steps, "log_queries": hit.log_queries, "log_lq": log_lq,
                "zero_var_base": probe(problem, w0, k_p0), "zero_var_end": probe(problem, hit.final_w, k_p1)}

    return run


def reference(variants) -> str:
    """The estimator the escape test compares with: the first with 0/1 rewards (no update
    before a first success, so it cannot escape by construction)."""
    return next(v for v in variants if not VARIANTS[v][0])


def _has_reference(config: dict) -> str | None:
    if not any(not VARIANTS[v][0] for v in config["variants"]):
        return ("variants must include an estimator with 0/1 rewards (none_01, rloo_01 or grpo_01), the reference "
                f"of the escape test, got {','.join(config['variants'])}")


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _slope_fit(table, config: dict, v: str, n_boot: int = 2000) -> dict:
    """:func:`fit_slope` of one estimator with its bootstrap draws against ``1/Q = 1/α``
    (exact by construction; the LQ each run records is its float32 rounding), runs ordered
    by ``(α, seed)`` so that fits of different estimators are paired draw by draw."""
    rows = table.where(part=v)
    la, seed = rows["log10_alpha"].astype(np.float64), rows["seed"].astype(np.int64)
    order = np.lexsort((seed, la))
    fit = fit_slope(10.0 ** -la[order], rows["log_queries"].astype(np.float64)[order],
                    ~rows["hit"].astype(bool)[order], groups=la[order], log_x=True, log_y=False,
                    regime=[config["regime_min"], math.inf], n_boot=n_boot, seed=0, return_boot=True)
    fit["pairing"] = np.stack([la[order], seed[order]])
    return fit


def escape_record(fit: dict, ref: dict, escape_exponent: float) -> dict:
    """The escape test of one estimator against the reference (module docstring): the
    margin ``m = s_v − (s_ref + β_e)/2`` with its paired-bootstrap 95% interval, the
    separation ``δ = (s_ref − β_e)/2`` (the value of ``m`` under the claim) and the power
    ``Φ(δ/σ − 1.96)``; ``escapes`` when the whole interval is below 0 and every point of
    the regime is estimable."""
    if not np.array_equal(fit["pairing"], ref["pairing"]):
        raise ValueError("the escape test pairs runs by (alpha, seed): every estimator must have the same runs")
    tau = lambda s: (s + escape_exponent) / 2.0  # noqa: E731
    margin, delta = fit["estimate"] - tau(ref["estimate"]), (ref["estimate"] - escape_exponent) / 2.0
    draws = fit["boot"] - tau(ref["boot"])
    ok = np.isfinite(draws)
    ci = [float(np.percentile(draws[ok], 2.5)), float(np.percentile(draws[ok], 97.5))] if ok.any() else [math.nan] * 2
    sd = float(np.std(draws[ok])) if ok.sum() > 1 else math.nan
    power = normal_cdf(delta / sd - 1.96) if sd > 0 and math.isfinite(delta) else math.nan
    rec = slope_record({**fit, "estimate": float(margin), "ci": ci}, float(delta), accept=(0.0, math.inf),
                       log_x=True, log_y=False, claim="C6",
                       note=f"margin s_v - (s_ref + {escape_exponent:g})/2 of the slope of ln(queries) vs ln(1/Q) "
                            "over the reference's, paired bootstrap; > 0: pays the barrier, < 0: escapes")
    rec["accept_ci"] = True
    rec["verdict"] = verdict(rec)
    rec.update(axes="slope margin over the escape threshold", threshold=float(tau(ref["estimate"])),
               separation=float(delta), sd=sd, power=power, boot_valid=float(ok.mean()),
               escapes=bool(fit["n_unestimable"] == 0 and math.isfinite(ci[1]) and ci[1] < 0.0))
    if rec["verdict"] != "confirmed" and not rec["escapes"]:
        rec["note"] += f"; inconclusive: the interval does not clear 0 (power {power:.2g})"
    return rec


def summary_of(table, config: dict) -> dict:
    G, beta_e = config["group_size"], config["escape_exponent"]
    ref = reference(config["variants"])
    fits = {v: _slope_fit(table, config, v) for v in config["variants"]}
    slopes = {f"{ref}_vs_invQ": slope_record(
        fits[ref], 1.0, accept=(beta_e, math.inf), log_x=True, log_y=False, claim="C6",
        note=f"d ln(queries) / d ln(1/Q) where 1/Q >= regime_min; 0/1 rewards: cannot escape by construction; "
             f"confirmed when the whole CI is above the escape exponent {beta_e:g} (the range separates them)")}
    slopes[f"{ref}_vs_invQ"]["accept_ci"] = True
    slopes[f"{ref}_vs_invQ"]["verdict"] = verdict(slopes[f"{ref}_vs_invQ"])
    separates = slopes[f"{ref}_vs_invQ"]["verdict"] == "confirmed"
    points, escapes = {}, {}
    for v in config["variants"]:
        if v != ref:
            rec = escape_record(fits[v], fits[ref], beta_e)
            if not separates:
                rec["verdict"] = "not confirmed"
                rec["note"] += "; void: the reference's slope does not separate from the escape exponent"
            slopes[f"{v}_escape_margin"] = rec
            escapes[v] = rec["escapes"]
        rows = table.where(part=v)
        la, t = rows["log10_alpha"].astype(np.float64), rows["log_queries"].astype(np.float64)
        cens = ~rows["hit"].astype(bool)
        alphas = sorted(set(la.tolist()))
        zb, ze = rows["zero_var_base"].astype(np.float64), rows["zero_var_end"].astype(np.float64)
        points[v] = {
            "log10_alpha": alphas,
            "log10_median_queries": [censored_median(t[la == a], cens[la == a]) / LN10 for a in alphas],
            "censored_fraction": [float(cens[la == a].mean()) for a in alphas],
            "zero_var_base": [float(zb[la == a].mean()) for a in alphas],
            "zero_var_base_exact": zero_variance_probability(10.0 ** np.asarray(alphas), G).tolist(),
            "zero_var_end": [float(ze[la == a].mean()) for a in alphas],
        }
    local = {v: {"estimate": f["estimate"], "ci": f["ci"], "n_unestimable": f["n_unestimable"]}
             for v, f in fits.items()}
    margins = [slopes[f"{v}_escape_margin"] for v in escapes]
    return {
        "experiment": "baselines",
        "claims": ["C6"],
        "reference": ref,
        "slopes": slopes,
        "local_slopes": local,
        "points": points,
        "escapes": escapes,
        "verdict": {
            "reference_separates_from_escape": separates,
            "no_estimator_escapes": not any(escapes.values()),
            "every_estimator_pays_the_barrier": separates and all(r["verdict"] == "confirmed" for r in margins),
        },
        "units": {
            "queries": "reward queries until err(w) <= eps (exact, all S contexts); KM medians, log10",
            "slopes": "d ln(median queries) / d ln(1/Q) over 1/Q >= regime_min (local_slopes); escape margins: "
                      "s_v - (s_ref + escape_exponent)/2, paired bootstrap over seeds",
            "zero_var": "fraction of groups whose samples all got the same reward, mean over n_probe steps and seeds",
        },
    }


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], np.float64)


def figure(table, config: dict, summary: dict, out_dir: Path, name: str) -> list[Path]:
    """Queries vs 1/Q per estimator, their medians relative to the reference, and the zero-variance groups."""
    G, n_seeds = config["group_size"], int(config.get("seeds", 0))
    fig, ax = plotting.figure(3, width=4.6, height=3.8)
    first = summary.get("reference") or reference(config["variants"])
    ref = _floats(summary["points"][first]["log10_median_queries"])
    for v in config["variants"]:
        rows = table.where(part=v)
        lq, y = rows["log_lq"].astype(np.float64), rows["log_queries"].astype(np.float64) / LN10
        xs, med = plotting.scaling_series(ax[0], np.exp(-lq), y, ~rows["hit"].astype(bool), label=LABELS[v],
                                          color=COLORS[v], jitter=0.04)
        if v == first:
            reg = xs >= config["regime_min"]
            plotting.theory_overlay(ax[0], xs[reg], med[reg], 1.0, color="0.3",
                                    label="theory $\\propto 1/Q_{q_0}(\\varepsilon)$, fitted constant")
        p = summary["points"][v]
        x = 10.0 ** -np.asarray(p["log10_alpha"])
        ax[1].plot(x, _floats(p["log10_median_queries"]) - ref, "o-", color=COLORS[v], ms=3.5, label=LABELS[v])
        ax[2].plot(x, p["zero_var_base"], "o-", color=COLORS[v], ms=3.5, label=f"{LABELS[v]}")
        ax[2].plot(x, p["zero_var_end"], "s:", color=COLORS[v], ms=3, alpha=0.7)
    x = 10.0 ** -np.asarray(summary["points"][first]["log10_alpha"])
    xx = np.geomspace(x.min(), x.max(), 100)
    ax[2].plot(xx, zero_variance_probability(1.0 / xx, G), "k--", lw=1,
               label=f"exact at base: $(1-\\alpha)^G+\\alpha^G$, G={G}")
    ax[0].set(title=f"reward queries to error $\\leq {config['eps']:g}$", xlabel="$1/Q_{q_0}(\\varepsilon)$",
              ylabel="reward queries")
    plotting.log10_axis(ax[0], "y")
    handles = ax[0].get_legend_handles_labels()[0] + [plotting.censored_legend_handle()]
    ax[0].legend(handles=handles, fontsize=6, loc="upper left", frameon=False)
    ax[1].axhline(0.0, color="0.5", lw=0.8)
    ax[1].set(title=f"median queries relative to {LABELS[first]}", xlabel="$1/Q_{q_0}(\\varepsilon)$",
              ylabel="log10 ratio of medians")
    ax[1].legend(fontsize=6, loc="best", frameon=False)
    ax[2].set(title="zero-variance groups (solid: base, dotted: end)", xlabel="$1/Q_{q_0}(\\varepsilon)$",
              ylabel="fraction of groups", ylim=(-0.02, 1.02))
    ax[2].legend(fontsize=6, loc="lower right", frameon=False)
    for a in ax:
        a.set_xscale("log")
        a.grid(alpha=0.25, which="both")
    title = (f"{name}: advantage estimators vs the LQ barrier; planted k={config['k']}, N={config['N']}, "
             f"$\\gamma$={config['gamma']:g}, S={config['n_contexts']}, B={config['batch_size']}, G={G}; "
             f"dots: runs, lines: Kaplan-Meier medians over {n_seeds} seeds")
    return plotting.save(fig, out_dir, name, title)


class Baselines(Experiment):
    name = "baselines"
    description = ("LLM-practice advantages (none, batch mean, RLOO, GRPO): zero-variance groups, none escapes "
                   "the LQ barrier")
    claims = ("C6",)
    settings = {
        "variants": Choices(list(VARIANTS), "advantage estimators (reward sign and advantage)", VARIANTS),
        **common(k=4, N=8, gamma=0.5, max_steps=40000, check_every=20, chunk_size=16),
        "n_contexts": Int(2, "planted contexts S (at most k/((k-1) gamma^2))", low=1),
        "eps": Real(0.1, "target: exact error <= eps", low=0.0, high=1.0, open_low=True, open_high=True),
        "batch_size": Int(2, "contexts per step", low=1),
        "group_size": Int(4, "samples per context (the group of RLOO and GRPO)", low=2),
        "log10_alphas": Reals([-2.0, -2.5, -3.0, -3.5, -4.0], "log10 of the base likelihood alpha = Q_q0(eps)",
                              low=-30.0, high=0.0, open_low=True, open_high=True, min_len=2),
        "regime_min": Real(300.0, "slopes are fitted where 1/Q >= regime_min", low=0.0, open_low=True),
        "escape_exponent": Real(0.5, "the escape the test detects: cost growing like (1/Q)^escape_exponent; the "
                                     "threshold sits midway between it and the reference's slope", low=0.0, high=1.0,
                                open_low=True, open_high=True),
        "n_probe": Int(64, "independent steps probing the zero-variance fraction", low=1),
    }
    constraints = (_contexts_fit, _has_reference, divides("check_every", "max_steps"))
    default_seeds = 16
    profiles = {
        "gpu": Profile(64, {"N": 16, "gamma": 0.25, "n_contexts": 21, "batch_size": 8, "group_size": 8,
                            "log10_alphas": [-2.0, -2.5, -3.0, -3.5, -4.0, -4.5, -5.0], "max_steps": 400000,
                            "check_every": 100, "chunk_size": 0},
                       "S = 21 contexts, groups of 8, alpha down to 1e-5 (a wide 1/alpha regime); 64 seeds"),
        "quick": Profile(2, {}),
    }

    def sweeps(self, config):
        """One sweep per estimator, in the order of ``variants``."""
        alphas = [float(a) for a in config["log10_alphas"]]
        for v in config["variants"]:
            yield Sweep(v, make_run(config, v), {"log10_alpha": alphas}, {"variant": v})

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, summary, out_dir, self.name)

    def text(self, summary: dict) -> str:
        ref = summary["reference"]
        rows = [("estimator", "local slope [95% CI]", "zero-var at base (exact)", "zero-var at end", "power",
                 "escapes")]
        for v, p in summary["points"].items():
            rec = summary["slopes"].get(f"{v}_escape_margin")
            zv = f"{p['zero_var_base'][0]:.4f} ({p['zero_var_base_exact'][0]:.4f})"
            power = "reference" if rec is None else ("n/a" if not _finite(rec.get("power")) else f"{rec['power']:.2f}")
            esc = ("—" if rec is None else "YES" if rec["escapes"] else "no" if rec["verdict"] == "confirmed"
                   else "inconclusive")
            rows.append((v, fmt_slope(summary["local_slopes"][v]), zv, f"{p['zero_var_end'][0]:.3f}", power, esc))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [slopes_table(summary["slopes"])]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        ver = summary["verdict"]
        margins = [r for k, r in summary["slopes"].items() if k.endswith("_escape_margin")]
        if margins:
            m = margins[0]
            lines.append(f"escape test against {ref} (0/1 rewards, cannot escape): threshold tau = "
                         f"{m['threshold']:.3f} on the slope, separation delta = {m['separation']:.3f} from the "
                         "reference and from the escape; power = Phi(delta/sd - 1.96) per estimator")
        lines.append("zero-var columns: at the smallest alpha; slopes: ln(queries to error <= eps) vs ln(1/Q)")
        yes = lambda ok: "yes" if ok else "NO"  # noqa: E731
        lines.append(f"reference separates from the escape: {yes(ver['reference_separates_from_escape'])}; "
                     f"no estimator escapes: {yes(ver['no_estimator_escapes'])}; every estimator shown to pay the "
                     f"barrier: {yes(ver['every_estimator_pays_the_barrier'])}")
        return "\n".join(lines + [self.timing_line(summary)])
