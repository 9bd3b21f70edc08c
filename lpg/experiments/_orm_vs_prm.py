"""What ``figure1`` and ``barrier`` share: outcome vs process rewards from the same
pre-trained base model, tracked on the mixture centres (PAPER.md §5, Figure 1).

One run (one seed) draws a teacher with Gaussian-mixture contexts, pre-trains a base
model ``q0`` on labelled pairs (Adagrad, token-averaged cross-entropy), then post-trains
it twice with on-policy policy gradient and ±1 rewards: the outcome reward (ORM) with
the batch-mean baseline, and the process reward (PRM) without one. The tracked set is
the ``M`` mixture centres; the *off-support* centres are those whose base likelihood
``q0(y*|x)`` is below ``off_support_threshold`` (1e-12 in the paper).

The base-model barrier (claims C4–C6 vs C9): on-policy ORM only learns from responses
it samples, so a centre the base model essentially never answers correctly stays
unlearnt; the PRM rewards every correct prefix and lifts those centres token by token.

Likelihoods are kept as natural logs throughout. The mean likelihood of the off-support
centres is ``log mean_j exp(ℓ_j)`` (a log-sum-exp), reported in summaries as log10.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import jax
import numpy as np

import lpg
from lpg import _checks, plotting
from lpg.algorithms.common import OPTIMIZERS
from lpg.algorithms.pg import BASELINES, LOSS_NORMS
from lpg.experiments import Experiment
from lpg.results import summarise

LN10 = math.log(10.0)
ALGS = ("orm", "prm")
LABELS = {"orm": "ORM (outcome reward)", "prm": "PRM (process reward)"}

PAPER_DEFAULTS: dict[str, Any] = {
    "d": 32,
    "k": 32,
    "N": 128,
    "n_centres": 32,
    "sigma": 0.05,
    "n_test": 1024,
    "pretrain_steps": 1000,
    "pretrain_batch": 256,
    "pretrain_lr": 0.1,
    "pg_steps": 4000,
    "pg_batch": 1024,
    "pg_lr": 0.1,
    "log_every": 50,
    "signed": True,
    "optimizer": "adagrad",
    "loss_norm": "token",
    "orm_baseline": "batch_mean",
    "prm_baseline": "none",
    "off_support_threshold": 1e-12,
    "chunk_size": 0,
    "vmap_size": -1,
}
"""Figure 1 of the paper (PAPER.md §5). ``chunk_size = 0``: all seeds in one chunk;
``vmap_size = 0``: a chunk's seeds in one ``vmap``, ``b ≥ 1``: ``b`` at a time,
``-1`` (default): ``1`` on a CPU, one ``vmap`` on an accelerator (:func:`lpg.sweep.sweep`'s
``"auto"``; on a CPU one at a time is about 2.5× as fast per seed at this size)."""


def validate(config: dict) -> None:
    positive = ("d", "n_centres", "N", "n_test", "pretrain_steps", "pretrain_batch", "pg_steps", "pg_batch", "log_every")
    for name in positive:
        _checks.int_at_least(name, config[name], 1)
    _checks.int_at_least("k", config["k"], 2)
    _checks.int_at_least("chunk_size", config["chunk_size"], 0)
    _checks.int_at_least("vmap_size", config["vmap_size"], -1)
    if config["n_centres"] > config["d"]:
        raise ValueError(f"n_centres must be at most d={config['d']} (centres are e_1..e_M), got {config['n_centres']}")
    if config["pg_steps"] % config["log_every"]:
        raise ValueError(f"log_every must divide pg_steps={config['pg_steps']}, got {config['log_every']}")
    _checks.at_least("sigma", config["sigma"], 0.0)
    _checks.positive("pretrain_lr", config["pretrain_lr"])
    _checks.positive("pg_lr", config["pg_lr"])
    _checks.in_open("off_support_threshold", config["off_support_threshold"], 0.0, 1.0)
    _checks.one_of("optimizer", config["optimizer"], OPTIMIZERS)
    _checks.one_of("loss_norm", config["loss_norm"], LOSS_NORMS)
    _checks.one_of("orm_baseline", config["orm_baseline"], BASELINES[:2])
    _checks.one_of("prm_baseline", config["prm_baseline"], BASELINES[:2])


def algorithms(config: dict) -> dict[str, lpg.PolicyGradient]:
    """On-policy PG: the ORM and the PRM of Figure 1 (±1 rewards when ``signed``, else
    0/1 — with no baseline the 0/1 runs use the exact event simulation of PAPER.md §6)."""
    common = dict(signed=config["signed"], batch_size=config["pg_batch"], optimizer=config["optimizer"],
                  loss_norm=config["loss_norm"])
    return {
        "orm": lpg.PolicyGradient("outcome", baseline=config["orm_baseline"], **common),
        "prm": lpg.PolicyGradient("process", baseline=config["prm_baseline"], **common),
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
        task = lpg.make_teacher(
            k_task, d=config["d"], k=config["k"], N=config["N"], context="mixture",
            n_centres=config["n_centres"], sigma=config["sigma"],
        )

        def make(base):
            return lpg.make_problem(task, key=k_test, n_test=config["n_test"], track_x=task.centres, base=base)

        base = lpg.pretrain(
            make(None), k_pre, steps=config["pretrain_steps"], batch_size=config["pretrain_batch"],
            optimizer=config["optimizer"], lr=config["pretrain_lr"], loss_norm=config["loss_norm"],
        )
        problem = make(base)
        ev = lpg.algorithms.evaluate(problem, base)
        out = {"base_test_error": ev.test_error, "base_track_log_lik": ev.track_log_lik}
        hyper = lpg.hyper(lr=config["pg_lr"])
        for (name, alg), k in zip(algs.items(), (k_orm, k_prm)):
            c = lpg.train(alg, problem, hyper, k, steps=config["pg_steps"], log_every=config["log_every"]).curves
            out[name] = {"test_error": c.test_error, "track_log_lik": c.track_log_lik, "log_queries": c.log_queries}
        out["step"] = c.step
        return out

    return run


def flatten(outputs: dict) -> dict[str, np.ndarray]:
    """The sweep's nested outputs as the flat arrays of ``results.npz``."""
    arrays = {"step": outputs["step"][0], "base_test_error": outputs["base_test_error"],
              "base_track_log_lik": outputs["base_track_log_lik"]}
    for name in ALGS:
        for key, value in outputs[name].items():
            arrays[f"{name}_{key}"] = value
    return arrays


def off_support_mask(arrays: dict, threshold: float) -> np.ndarray:
    """``(S, M)``: centres whose base likelihood is below ``threshold``."""
    return np.asarray(arrays["base_track_log_lik"], np.float64) < math.log(threshold)


def log_mean_lik(log_lik: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``log mean_{j ∈ mask} exp(ℓ_j)`` over the last axis (``nan`` for an empty mask).
    ``log_lik (S, …, M)``, ``mask (S, M)``."""
    ll = np.asarray(log_lik, np.float64)
    m = np.broadcast_to(mask.reshape(mask.shape[0], *([1] * (ll.ndim - 2)), mask.shape[1]), ll.shape)
    masked = np.where(m, ll, -np.inf)
    n = m.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        peak = np.max(masked, axis=-1, keepdims=True)
        safe = np.where(np.isfinite(peak), peak, 0.0)
        out = safe[..., 0] + np.log(np.sum(np.exp(masked - safe), axis=-1)) - np.log(n)
    return np.where(n > 0, out, np.nan)


def summary_of(arrays: dict, config: dict) -> dict:
    """Headline numbers over seeds. Likelihoods as log10 of the off-support mean
    likelihood at the end of training; query counts as log10 of the total."""
    mask = off_support_mask(arrays, config["off_support_threshold"])
    n_off = mask.sum(axis=1)
    base = log_mean_lik(arrays["base_track_log_lik"], mask) / LN10
    off = {"base": summarise(base)}
    final = {}
    for name in ALGS:
        final[name] = log_mean_lik(arrays[f"{name}_track_log_lik"][:, -1], mask) / LN10
        off[name] = summarise(final[name])
        off[f"{name}_gain"] = summarise(final[name] - base)
    test_error = {"base": summarise(arrays["base_test_error"])}
    queries = {}
    for name in ALGS:
        test_error[name] = summarise(arrays[f"{name}_test_error"][:, -1])
        queries[name] = summarise(arrays[f"{name}_log_queries"][:, -1] / LN10)
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


def table(summary: dict) -> str:
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
        f"{'yes' if bar['prm_gain_at_least_100x'] else 'NO'} ({bar['prm_gain_at_least_100x_seeds']}/{bar['seeds']} seeds)",
    ]
    return "\n".join(lines)


def figure(arrays: dict, config: dict, out_dir: Path, name: str) -> list[Path]:
    """Four panels: the off-support mean likelihood and the test error over PG steps
    (ORM vs PRM, seeds as bands), then every centre's likelihood under ORM and under PRM
    for the first seed, coloured by its base likelihood."""
    step = np.asarray(arrays["step"])
    threshold = config["off_support_threshold"]
    mask = off_support_mask(arrays, threshold)
    fig, ax = plotting.figure(2, 2, width=5.2, height=3.6)
    for alg in ALGS:
        off = log_mean_lik(arrays[f"{alg}_track_log_lik"], mask) / LN10
        plotting.seed_band(ax[0], step, off, label=LABELS[alg], color=plotting.COLORS[alg])
        plotting.seed_band(ax[1], step, arrays[f"{alg}_test_error"], label=LABELS[alg], color=plotting.COLORS[alg])
    ax[0].axhline(math.log10(threshold), color="0.5", ls=":", lw=1, label=f"off-support threshold {threshold:g}")
    ax[0].set(title="mean likelihood of the off-support centres", xlabel="policy-gradient step",
              ylabel="$q(y^*|x)$ (mean over centres)")
    plotting.log10_axis(ax[0])
    ax[1].set_yscale("log")
    ax[1].set(title="test error", xlabel="policy-gradient step", ylabel="$E_x[1 - p_w(y^*|x)]$")
    for a in ax[:2]:
        a.legend(fontsize=7, loc="best")
    base = np.asarray(arrays["base_track_log_lik"][0], np.float64) / LN10
    for a, alg in zip(ax[2:], ALGS):
        curves = np.asarray(arrays[f"{alg}_track_log_lik"][0], np.float64).T / LN10
        plotting.coloured_lines(a, step, curves, base, label="base likelihood $q_0(y^*|x)$ (log10)")
        a.axhline(math.log10(threshold), color="0.5", ls=":", lw=1)
        a.set(title=f"{LABELS[alg]}: each centre (seed 0)", xlabel="policy-gradient step", ylabel="$p_w(y^*|x)$")
        plotting.log10_axis(a)
    fig.suptitle(f"{name}: ORM vs PRM beyond the base model's support — N={config['N']}, k={config['k']}, "
                 f"d={config['d']}, M={config['n_centres']}\n{plotting.band_note(mask.shape[0])}", fontsize=9)
    fig.tight_layout()
    return plotting.save(fig, out_dir, name)


class OrmVsPrm(Experiment):
    """Shared ``compute``/``draw``/``table`` of ``figure1`` and ``barrier``."""

    validate = staticmethod(validate)

    summarise = staticmethod(summary_of)

    def compute(self, config: dict, *, seeds: int, out_dir: Path, resume: bool) -> tuple[dict, dict]:
        vmap_size = {-1: "auto", 0: None}.get(config["vmap_size"], config["vmap_size"])
        result = self.sweep_part(make_run(config), {}, config, seeds=seeds, out_dir=out_dir, resume=resume,
                                 part="runs", vmap_size=vmap_size)
        arrays = flatten(result.outputs)
        arrays["seed"] = result.seed
        return arrays, result.timing

    def draw(self, arrays: dict, config: dict, summary: dict, out_dir: Path) -> list[Path]:
        return figure(arrays, config, out_dir, self.name)

    def table(self, summary: dict) -> str:
        t = summary["timing"]
        return table(summary) + f"\ncompile {t['compile_s']:.1f}s, run {t['run_s']:.1f}s"


__all__ = ["PAPER_DEFAULTS", "OrmVsPrm", "log_mean_lik", "make_run", "summary_of", "table"]
