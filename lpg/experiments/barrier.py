"""``figure1`` and ``barrier``: outcome vs process rewards from the same pre-trained base
model, tracked on the mixture centres (PAPER.md §5, Figure 1; claims C4–C6 vs C9).

One run (one seed) draws a teacher with Gaussian-mixture contexts, pre-trains a base
model ``q0`` on labelled pairs (Adagrad, token-averaged cross-entropy), then post-trains
it twice with on-policy policy gradient and ±1 rewards: the outcome reward (ORM) with
the batch-mean baseline, and the process reward (PRM) without one. The tracked set is
the ``M`` mixture centres; the *off-support* centres are those whose base likelihood
``q0(y*|x)`` is below ``off_support_threshold`` (1e-12 in the paper).

The base-model barrier (claims C4–C6 vs C9): on-policy ORM only learns from responses
it samples, so a centre the base model essentially never answers correctly stays
unlearnt; the PRM rewards every correct prefix and lifts those centres token by token.

``figure1`` runs the paper's settings (N = 128, d = k = 32, M = 32, σ = 0.05; base:
Adagrad lr 0.1, batch 256, 1000 steps; PG: Adagrad lr 0.1, batch 1024, 4000 steps; test
set 1024). ``barrier``, the main job, is a scaled-down Figure 1 that runs in well under
a minute on a laptop CPU: k = 16, a shorter pre-training (150 steps) that leaves at least
two off-support centres per seed, and 600 PG steps of batch 128.

Likelihoods are kept as natural logs throughout. The mean likelihood of the off-support
centres is ``log mean_j exp(ℓ_j)`` (a log-sum-exp), reported in summaries as log10.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax
import numpy as np

import lpg
from lpg import optim, plotting
from lpg.analysis import log_mean_lik
from lpg.results import summarise
from lpg.spec import Bool, Choice, Experiment, Int, Profile, Real, Sweep, at_most, common, divides, with_defaults

LN10 = math.log(10.0)
ALGS = ("orm", "prm")
LABELS = {"orm": "ORM (outcome reward)", "prm": "PRM (process reward)"}

SETTINGS = {
    **common(d=32, k=32, N=128, chunk_size=0),
    "n_centres": Int(32, "mixture centres M (the tracked contexts)", low=1),
    "sigma": Real(0.05, "mixture noise std (the noise is clipped to norm <= sigma)", low=0.0),
    "n_test": Int(1024, "test contexts for err(w)", low=1),
    "pretrain_steps": Int(1000, "supervised pre-training steps of the base model", low=1),
    "pretrain_batch": Int(256, "pre-training batch size", low=1),
    "pretrain_lr": Real(0.1, "pre-training learning rate", low=0.0, open_low=True),
    "pg_steps": Int(4000, "policy-gradient steps per reward", low=1),
    "pg_batch": Int(1024, "policy-gradient batch size (contexts per step)", low=1),
    "pg_lr": Real(0.1, "policy-gradient learning rate", low=0.0, open_low=True),
    "log_every": Int(50, "steps between log points", low=1),
    "signed": Bool(True, "±1 rewards (the authors'); false: 0/1 (the exact event path without a baseline)"),
    "optimizer": Choice("adagrad", "optimiser of both stages", optim.OPTIMIZERS),
    "loss_norm": Choice("token", "'token': the loss is averaged over positions too (the authors')",
                        ("sequence", "token")),
    "orm_baseline": Choice("batch_mean", "advantage of the outcome reward", ("none", "batch_mean")),
    "prm_baseline": Choice("none", "advantage of the process reward", ("none", "batch_mean")),
    "off_support_threshold": Real(1e-12, "base likelihood below which a centre is off-support", low=0.0, high=1.0,
                                  open_low=True, open_high=True),
    "vmap_size": Int(-1, "seeds vmapped at a time per device (-1: 1 on a CPU, all on an accelerator; 0: all)",
                     low=-1),
}
CONSTRAINTS = (at_most("n_centres", "d", " (centres are e_1..e_M)"), divides("log_every", "pg_steps"))


def algorithms(config: dict) -> dict[str, lpg.PolicyGradient]:
    """On-policy PG: the ORM and the PRM of Figure 1 (±1 rewards when ``signed``, else
    0/1 — with no baseline the 0/1 runs use the exact event simulation of PAPER.md §6)."""
    common = dict(batch_size=config["pg_batch"], optimizer=config["optimizer"], loss_norm=config["loss_norm"])
    return {
        "orm": lpg.PolicyGradient(lpg.rewards.Outcome(signed=config["signed"]), advantage=config["orm_baseline"],
                                  **common),
        "prm": lpg.PolicyGradient(lpg.rewards.Process(signed=config["signed"]), advantage=config["prm_baseline"],
                                  **common),
    }


def make_run(config: dict):
    """``run(key) -> dict`` of one seed: the base model's test error and log-likelihood
    of every centre, then each algorithm's curves at the log points. Equal configs give
    the same function object, so a sweep reuses its compiled program."""
    return _make_run(tuple(sorted(config.items())))


@functools.lru_cache(maxsize=8)
def _make_run(items: tuple):
    config = dict(items)
    algs = algorithms(config)

    def run(key):
        k_task, k_test, k_pre, k_orm, k_prm = jax.random.split(key, 5)
        task = lpg.make_teacher(k_task, d=config["d"], k=config["k"], N=config["N"], context="mixture",
                                n_centres=config["n_centres"], sigma=config["sigma"])

        def make(base):
            return lpg.make_problem(task, key=k_test, n_test=config["n_test"], track_x=task.centres, base=base)

        base = lpg.pretrain(make(None), k_pre, steps=config["pretrain_steps"], batch_size=config["pretrain_batch"],
                            optimizer=config["optimizer"], lr=config["pretrain_lr"], loss_norm=config["loss_norm"])
        problem = make(base)
        ev = lpg.evaluate(problem, base)
        hyper = lpg.hyper(lr=config["pg_lr"])
        curves = {}
        for (name, alg), k in zip(algs.items(), (k_orm, k_prm)):
            c = lpg.train(alg, problem, hyper, k, steps=config["pg_steps"], log_every=config["log_every"]).curves
            curves[name] = {"step": c.step, "test_error": c.test_error, "track_log_lik": c.track_log_lik,
                            "log_queries": c.log_queries}
        return {"base_test_error": ev.test_error, "base_track_log_lik": ev.track_log_lik, "curves": curves}

    return run


def base_log_lik(table) -> np.ndarray:
    """``(S, M)``: every centre's base log-likelihood, seeds in order."""
    return table.where(series="orm").per_run("base_track_log_lik").astype(np.float64)


def off_support_mask(table, threshold: float) -> np.ndarray:
    """``(S, M)``: centres whose base likelihood is below ``threshold``."""
    return base_log_lik(table) < math.log(threshold)


def summary_of(table, config: dict) -> dict:
    """Headline numbers over seeds. Likelihoods as log10 of the off-support mean
    likelihood at the end of training; query counts as log10 of the total."""
    mask = off_support_mask(table, config["off_support_threshold"])
    n_off = mask.sum(axis=1)
    base = log_mean_lik(base_log_lik(table), mask) / LN10
    off = {"base": summarise(base)}
    test_error = {"base": summarise(table.where(series="orm").per_run("base_test_error"))}
    final, queries = {}, {}
    for name in ALGS:
        last = table.where(series=name, step=-1)
        final[name] = log_mean_lik(last["track_log_lik"], mask) / LN10
        off[name] = summarise(final[name])
        off[f"{name}_gain"] = summarise(final[name] - base)
        test_error[name] = summarise(last["test_error"])
        queries[name] = summarise(last["log_queries"] / LN10)
    has = n_off > 0
    orm_low = has & (final["orm"] < -6.0)
    prm_up = has & (final["prm"] - base >= 2.0)
    return {
        "threshold": config["off_support_threshold"],
        "off_support": off,
        "test_error": test_error,
        "queries": queries,
        "n_off_support": {**summarise(n_off), "per_seed": n_off.tolist(), "min": int(n_off.min())},
        "barrier": {
            # Across seeds: the bootstrap interval of the mean (log10) clears the bar.
            "orm_below_1e-6": bool(off["orm"]["n"] > 0 and off["orm"]["ci95"][1] < -6.0),
            "prm_gain_at_least_100x": bool(off["prm_gain"]["n"] > 0 and off["prm_gain"]["ci95"][0] >= 2.0),
            # Seed by seed (a seed without off-support centres counts as a failure).
            "orm_below_1e-6_seeds": int(orm_low.sum()),
            "prm_gain_at_least_100x_seeds": int(prm_up.sum()),
            "seeds": int(n_off.size),
        },
        "units": {
            "off_support": "log10 of the mean likelihood q(y*|x) of the off-support centres; "
                           "*_gain: log10 of the ratio to the base model",
            "barrier": "orm_below_1e-6 / prm_gain_at_least_100x: the bootstrap 95% interval of the mean over "
                       "seeds (log10) lies below 1e-6 / above 100x; *_seeds: how many seeds pass on their own",
            "queries": "log10 of the total number of reward queries of a run",
            "test_error": "err(w) = E_x[1 - p_w(y*|x)] on the test set, at the end of training",
        },
    }


def _interval(s: dict, fmt) -> str:
    if not s["n"]:
        return "n/a"
    lo, hi = s["ci95"]
    return f"{fmt(s['mean'])} [{fmt(lo)}, {fmt(hi)}]"


def _pow10(x: float) -> str:
    return f"10^{x:.1f}"


def text(summary: dict) -> str:
    """ORM vs PRM: off-support likelihood, test error and reward queries, each as the
    mean over seeds with its bootstrap 95% interval."""
    off, err, q = summary["off_support"], summary["test_error"], summary["queries"]
    n = summary["n_off_support"]
    rows = [
        ("", "off-support likelihood", "test error", "reward queries"),
        ("base", _interval(off["base"], _pow10), _interval(err["base"], lambda v: f"{v:.3f}"), "-"),
    ]
    for name in ALGS:
        rows.append((name.upper(), _interval(off[name], _pow10), _interval(err[name], lambda v: f"{v:.3f}"),
                     _interval(q[name], _pow10)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    threshold = format(summary["threshold"], "g") if "threshold" in summary else "the threshold"
    gain = summary["off_support"]["prm_gain"]
    bar = summary["barrier"]
    lines += [
        f"mean over {off['orm']['n']} seeds [bootstrap 95% interval]; off-support likelihood: the mean likelihood "
        f"of the {n['min']}-{max(n['per_seed'])} centres per seed with base likelihood < "
        f"{threshold}, averaged over seeds in log10",
        f"PRM / base on the off-support centres: {_interval(gain, lambda v: f'{10 ** v:.3g}x')}",
        f"barrier across seeds (95% interval clears the bar): ORM < 1e-6: {'yes' if bar['orm_below_1e-6'] else 'NO'} "
        f"({bar['orm_below_1e-6_seeds']}/{bar['seeds']} seeds); PRM >= 100x base: "
        f"{'yes' if bar['prm_gain_at_least_100x'] else 'NO'} "
        f"({bar['prm_gain_at_least_100x_seeds']}/{bar['seeds']} seeds)",
    ]
    return "\n".join(lines)


def figure(table, config: dict, out_dir: Path, name: str) -> list[Path]:
    """Four panels: the off-support mean likelihood and the test error over PG steps
    (ORM vs PRM, seeds as bands), then every centre's likelihood under ORM and under PRM
    for the first seed, coloured by its base likelihood."""
    threshold = config["off_support_threshold"]
    mask = off_support_mask(table, threshold)
    fig, ax = plotting.figure(2, 2, width=5.2, height=3.6)
    for alg in ALGS:
        rows = table.where(series=alg)
        step = rows.by_run("step")[0]
        off = log_mean_lik(rows.by_run("track_log_lik"), mask) / LN10
        plotting.seed_band(ax[0], step, off, label=LABELS[alg], color=plotting.COLORS[alg])
        plotting.seed_band(ax[1], step, rows.by_run("test_error"), label=LABELS[alg], color=plotting.COLORS[alg])
    ax[0].axhline(math.log10(threshold), color="0.5", ls=":", lw=1, label=f"off-support threshold {threshold:g}")
    ax[0].set(title="mean likelihood of the off-support centres", xlabel="policy-gradient step",
              ylabel="$q(y^*|x)$ (mean over centres)")
    plotting.log10_axis(ax[0])
    ax[1].set_yscale("log")
    ax[1].set(title="test error", xlabel="policy-gradient step", ylabel="$E_x[1 - p_w(y^*|x)]$")
    for a in ax[:2]:
        a.legend(fontsize=7, loc="best")
    base = base_log_lik(table)[0] / LN10
    for a, alg in zip(ax[2:], ALGS):
        rows = table.where(series=alg)
        curves = np.asarray(rows.by_run("track_log_lik")[0], np.float64).T / LN10
        plotting.coloured_lines(a, rows.by_run("step")[0], curves, base, label="base likelihood $q_0(y^*|x)$ (log10)")
        a.axhline(math.log10(threshold), color="0.5", ls=":", lw=1)
        a.set(title=f"{LABELS[alg]}: each centre (seed 0)", xlabel="policy-gradient step", ylabel="$p_w(y^*|x)$")
        plotting.log10_axis(a)
    title = (f"{name}: ORM vs PRM beyond the base model's support — N={config['N']}, k={config['k']}, "
             f"d={config['d']}, M={config['n_centres']}\n{plotting.band_note(mask.shape[0])}")
    return plotting.save(fig, out_dir, name, title)


class _OrmVsPrm(Experiment):
    claims = ("C4", "C6", "C9")
    constraints = CONSTRAINTS

    def sweeps(self, config):
        vmap_size = {-1: "auto", 0: None}.get(config["vmap_size"], config["vmap_size"])
        yield Sweep("runs", make_run(config), vmap_size=vmap_size)

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, out_dir, self.name)

    def text(self, summary):
        return text(summary) + "\n" + self.timing_line(summary)


class Figure1(_OrmVsPrm):
    name = "figure1"
    description = "Paper Figure 1: ORM vs PRM post-training beyond the base model's support (N=128, k=32)"
    settings = SETTINGS
    default_seeds = 2
    profiles = {"gpu": Profile(64, {}, "the paper's settings, 64 seeds"),
                "quick": Profile(2, {"pg_steps": 400, "pretrain_steps": 300, "pg_batch": 256})}


class Barrier(_OrmVsPrm):
    name = "barrier"
    description = "The base-model barrier in seconds: ORM vs PRM on centres the base model misses (small Figure 1)"
    settings = with_defaults(SETTINGS, k=16, n_test=512, pretrain_steps=150, pg_steps=600, pg_batch=128, log_every=25)
    default_seeds = 8
    profiles = {"gpu": Profile(256, {}, "256 seeds")}
