"""A custom sweep in the setting of claim C1 (PAPER.md §4): SGD with the paper's
adaptive step ``η_t = 1/(4 + 2‖g_t‖²)`` and with the constant step ``η = 1/(4N)`` (the
largest the worst-case analysis allows at length N: ``log p_w(y*|x)`` is N-smooth), across
the response length N, on the planted-margin task (``‖φ‖ ≤ 1`` and margin exactly γ at
every N, as C1 assumes). It prints the final test error per N for each step rule; C1
says the adaptive step's error does not grow with N while the constant step's grows like
N. With this few steps both are still early in training (the adaptive step first spends
about ``2·ln(1/p_w0(y*|x)) = 2N ln k`` steps per context leaving the uniform start, see
``lpg run sgd-lr`` for the measured exponents): read it as a demonstration of a sweep.

The length is a traced grid setting (the padded, masked path: one compiled program
for every N up to ``N_MAX``); the optimiser decides the program, so it is static: one
sweep per optimiser. Results go to ``runs/custom_sweep`` in lpg's results format and a
second run with ``--resume`` reuses the checkpoints.

    python examples/custom_sweep.py [--tiny] [--out DIR] [--resume]
"""

import argparse
import os
from pathlib import Path

import jax

import lpg
from lpg.results import Table, summarise, write_results
from lpg.sweep import sweep

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tiny", action="store_true", default=os.environ.get("LPG_TINY") == "1")
parser.add_argument("--out", type=Path, default=Path("runs/custom_sweep"))
parser.add_argument("--resume", action="store_true")
args = parser.parse_args()

N_MAX = 8 if args.tiny else 32
lengths = [2, 4, 8] if args.tiny else [2, 4, 8, 16, 32]
steps, seeds = (40, 2) if args.tiny else (200, 8)
task = lpg.make_planted(jax.random.PRNGKey(0), k=4, N=N_MAX, gamma=0.5)


def make_run(optimizer):
    alg = lpg.SGD(batch_size=1, optimizer=optimizer)

    def run(key, length):  # one run; the length arrives as a traced scalar
        k_test, k_run = jax.random.split(key)
        problem = lpg.make_problem(task, key=k_test, n_test=512, length=length)
        lr = 1.0 if optimizer == "adaptive" else 0.25 / length  # 1/(4N) for the constant step
        return lpg.train(alg, problem, lpg.Hyper(lr=lr), k_run, steps=steps, log_every=steps // 4).curves

    return run


columns, summary = {"rule": [], "length": [], "seed": [], "final_error": []}, {}
for optimizer in ("adaptive", "constant"):
    res = sweep(make_run(optimizer), {"length": lengths}, seeds=seeds, chunk_size=16,
                out_dir=args.out / "checkpoint" / optimizer, resume=args.resume, desc=optimizer)
    err = res.outputs.test_error[:, -1]
    for name, values in (("rule", [optimizer] * len(err)), ("length", res.settings["length"]), ("seed", res.seed),
                         ("final_error", err)):
        columns[name].extend(values)
    summary[optimizer] = {f"N={n}": summarise(err[res.settings["length"] == n]) for n in lengths}
    print(f"{optimizer:>8}: final test error by N (mean over {seeds} seeds): "
          + ", ".join(f"N={n}: {summary[optimizer][f'N={n}']['mean']:.3f}" for n in lengths))
write_results(args.out, config={"example": "custom_sweep", "lengths": lengths, "steps": steps, "seeds": seeds},
              table=Table(columns), summary=summary)
print(f"results: {args.out} ({', '.join(sorted(p.name for p in args.out.iterdir() if p.is_file()))})")
