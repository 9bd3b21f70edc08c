"""``figure2``: the likelihood CDF, the Likelihood Quantile curve and the α-tail of
supervised checkpoints (PAPER.md §5, Figure 2; claim C8).

A teacher with Rademacher contexts (d = 32, k = 10, N = 100) is learnt by supervised
training (Adagrad, lr 1.0, batch 256, token-averaged cross-entropy); every 500 steps,
ten times, the checkpoint's likelihood of ``y*`` is measured on 16384 fresh contexts,
giving ``P_x(q(y*|x) ≤ α)``, ``Q_q(ε)`` and ``α·P_x(q(y*|x) > α)``. What Figure 2 shows:
while the test error falls and the median likelihood approaches 1, the LQ at small ε
stays many orders of magnitude below 1 — pre-training leaves a tail of contexts with
tiny base likelihood, the quantity that governs outcome-reward post-training (C4, C8).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lpg
from lpg import optim, plotting
from lpg.metrics import likelihood_cdf, likelihood_quantile, log_alpha_tail
from lpg.results import summarise
from lpg.spec import Choice, Experiment, Int, Profile, Real, Sweep, common
from lpg.tasks import CONTEXTS

LN10 = math.log(10.0)


def alpha_grid(config: dict) -> np.ndarray:
    """log10 α from the uniform policy's ``k^-N`` (and a decade below) up to 1, with
    ``n_alpha`` points over the whole range and as many again over the last six decades
    (where the α-tail lives)."""
    low = -config["N"] * math.log10(config["k"]) - 1.0
    n = config["n_alpha"]
    return np.unique(np.concatenate([np.linspace(low, 0.0, n), np.linspace(max(low, -6.0), 0.0, n)]))


def eps_grid(config: dict) -> np.ndarray:
    return np.logspace(math.log10(config["eps_min"]), math.log10(0.99), config["n_eps"])


def make_run(config: dict):
    """``run(key)``: one teacher, one supervised run, the metrics of every checkpoint."""
    steps = config["n_checkpoints"] * config["checkpoint_every"]
    alg = lpg.SGD(batch_size=config["batch_size"], optimizer=config["optimizer"], loss_norm=config["loss_norm"])
    log_alphas = jnp.asarray(alpha_grid(config) * LN10, jnp.float32)
    eps = [float(e) for e in eps_grid(config)]

    def run(key):
        k_task, k_eval, k_test, k_train = jax.random.split(key, 4)
        task = lpg.make_teacher(k_task, d=config["d"], k=config["k"], N=config["N"], context=config["context"])
        samples = task.sample_contexts(k_eval, config["n_samples"])
        problem = lpg.make_problem(task, key=k_test, n_test=config["n_test"], track_x=samples)
        curves = lpg.train(alg, problem, lpg.hyper(lr=config["lr"]), k_train, steps=steps,
                           log_every=config["checkpoint_every"], w0=problem.fmap.init_params()).curves
        ll = curves.track_log_lik  # (C + 1, n_samples)
        return {"curves": {"sgd": {
            "step": curves.step,
            "test_error": curves.test_error,
            "cdf": likelihood_cdf(ll, log_alphas),
            "log_lq": jnp.stack([likelihood_quantile(ll, e) for e in eps], axis=-1),
            "log_tail": log_alpha_tail(ll, log_alphas),
            "median_log_lik": jnp.median(ll, axis=-1),
        }}}

    return run


def summary_of(table, config: dict) -> dict:
    lq = table.by_run("log_lq").astype(np.float64) / LN10  # (S, C + 1, E)
    test_error, median = table.by_run("test_error"), table.by_run("median_log_lik")
    eps = eps_grid(config)
    report = {f"{e:g}": int(np.argmin(np.abs(eps - e))) for e in (0.01, 0.1, 0.5)}
    uniform = -config["N"] * math.log10(config["k"])
    per_ckpt = []
    for c, step in enumerate(table.by_run("step")[0]):
        per_ckpt.append({
            "step": int(step),
            "test_error": summarise(test_error[:, c]),
            "log10_lq": {name: summarise(lq[:, c, j]) for name, j in report.items()},
            "log10_median_likelihood": summarise(median[:, c] / LN10),
        })
    last = per_ckpt[-1]
    return {
        "test_error": {"start": per_ckpt[0]["test_error"], "final": last["test_error"]},
        "log10_lq": last["log10_lq"],
        "checkpoints": per_ckpt,
        "uniform_log10_likelihood": uniform,
        "eps_reported": {name: float(eps[j]) for name, j in report.items()},
        "units": {
            "log10_lq": "log10 of the Likelihood Quantile Q_q(eps) at the final checkpoint (keys: eps); "
                        "checkpoints[i] holds every checkpoint",
            "uniform_log10_likelihood": "log10 k^-N, the likelihood of y* under the uniform policy",
        },
    }


def figure(table, config: dict, out_dir: Path, name: str) -> list[Path]:
    steps = table.by_run("step")[0]
    cdf, log_lq, log_tail = table.by_run("cdf"), table.by_run("log_lq"), table.by_run("log_tail")
    la, eps = alpha_grid(config), eps_grid(config)
    uniform = -config["N"] * math.log10(config["k"])
    fig, ax = plotting.figure(3, width=4.6, height=3.6)
    cmap = plotting.plt.get_cmap("viridis")
    for c, step in enumerate(steps):
        kw = dict(label=f"step {step}", color=cmap(c / max(1, len(steps) - 1)))
        plotting.seed_band(ax[0], la, cdf[:, c], alpha=0.1, **kw)
        plotting.seed_band(ax[1], eps, log_lq[:, c] / LN10, alpha=0.1, **kw)
        plotting.seed_band(ax[2], la, np.exp(log_tail[:, c]), alpha=0.1, **kw)
    for axis in (ax[0], ax[2]):
        axis.axvline(uniform, color="0.5", ls=":", lw=1)
        plotting.log10_axis(axis, "x")
    # The tail lives where α·P(q > α) is not negligible: zoom there.
    tail = np.exp(np.asarray(log_tail, np.float64))
    visible = la[np.any(tail >= 1e-3 * np.max(tail), axis=(0, 1))]
    if visible.size:
        ax[2].set_xlim(max(la[0], visible[0] - 1.0), 0.0)
    ax[1].axhline(uniform, color="0.5", ls=":", lw=1, label="uniform $k^{-N}$")
    ax[1].set_xscale("log")
    plotting.log10_axis(ax[1])
    ax[0].set(title="likelihood CDF", xlabel=r"$\alpha$", ylabel=r"$P_x(q(y^*|x) \leq \alpha)$")
    ax[1].set(title="Likelihood Quantile", xlabel=r"$\varepsilon$", ylabel=r"$Q_q(\varepsilon)$")
    ax[2].set(title=r"$\alpha$-tail", xlabel=r"$\alpha$", ylabel=r"$\alpha \cdot P_x(q(y^*|x) > \alpha)$")
    ax[1].legend(fontsize=6, ncol=2, loc="lower right")
    title = (f"{name}: supervised checkpoints every {config['checkpoint_every']} steps (d={config['d']}, "
             f"k={config['k']}, N={config['N']}, {config['n_samples']} contexts; dotted: uniform policy)\n"
             f"{plotting.band_note(cdf.shape[0])}")
    return plotting.save(fig, out_dir, name, title)


def _fmt(s: dict, spec: str) -> str:
    return "n/a" if not s["n"] else format(s["mean"], spec)


class Figure2(Experiment):
    name = "figure2"
    description = "Paper Figure 2: likelihood CDF, LQ curve and alpha-tail of supervised checkpoints (k=10, N=100)"
    claims = ("C8",)
    settings = {
        **common(d=32, k=10, N=100, chunk_size=0),
        "context": Choice("rademacher", "context distribution", CONTEXTS),
        "n_checkpoints": Int(10, "checkpoints measured", low=1),
        "checkpoint_every": Int(500, "supervised steps between checkpoints", low=1),
        "batch_size": Int(256, "supervised batch size", low=1),
        "lr": Real(1.0, "learning rate", low=0.0, open_low=True),
        "optimizer": Choice("adagrad", "optimiser", optim.OPTIMIZERS),
        "loss_norm": Choice("token", "'token': the loss is averaged over positions too", ("sequence", "token")),
        "n_samples": Int(16384, "fresh contexts whose likelihood is measured at each checkpoint", low=1),
        "n_test": Int(1024, "test contexts for err(w)", low=1),
        "n_alpha": Int(201, "points of the alpha grid (CDF, tail)", low=2),
        "n_eps": Int(61, "points of the eps grid (LQ curve)", low=2),
        "eps_min": Real(1e-3, "smallest eps of the LQ curve", low=0.0, high=0.99, open_low=True, open_high=True),
    }
    default_seeds = 2
    profiles = {"gpu": Profile(64, {}, "64 seeds")}

    def sweeps(self, config):
        yield Sweep("runs", make_run(config))

    def summarise(self, table, config):
        return summary_of(table, config)

    def draw(self, table, config, summary, out_dir):
        return figure(table, config, out_dir, self.name)

    def text(self, summary: dict) -> str:
        names = list(summary["eps_reported"])
        head = ["step", "test error"] + [f"log10 Q({n})" for n in names] + ["log10 median q"]
        rows = [head]
        for c in summary["checkpoints"]:
            rows.append([str(c["step"]), _fmt(c["test_error"], ".3f")]
                        + [_fmt(c["log10_lq"][n], ".1f") for n in names]
                        + [_fmt(c["log10_median_likelihood"], ".2f")])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
        n = summary["checkpoints"][-1]["test_error"]["n"]
        lines.append(f"means over {n} seeds; uniform policy: log10 k^-N = {summary['uniform_log10_likelihood']:.1f}")
        lines.append(self.timing_line(summary))
        return "\n".join(lines)
