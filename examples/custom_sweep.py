"""A custom sweep in the setting of claim C1 (PAPER.md §4): SGD with the paper's
adaptive step ``η_t = 1/(4 + 2‖g_t‖²)`` and with a constant step, across the response
length N, on the planted-margin task (``‖φ‖ ≤ 1`` and margin exactly γ at every N, as
C1 assumes). It prints the final test error per N for each step rule.

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
from lpg.results import summarise, write_results
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

    def run(key, length, lr):  # one run; length and lr arrive as traced scalars
        problem = lpg.make_problem(task, key=jax.random.PRNGKey(1), n_test=512, length=length)
        return lpg.train(alg, problem, lpg.hyper(lr=lr), key, steps=steps, log_every=steps // 4).curves

    return run


arrays, summary = {}, {}
for optimizer, lrs in [("adaptive", [1.0]), ("constant", [1.0])]:
    res = sweep(make_run(optimizer), {"length": lengths, "lr": lrs}, seeds=seeds, chunk_size=16,
                out_dir=args.out / "checkpoint" / optimizer, resume=args.resume, desc=optimizer)
    err = res.outputs.test_error[:, -1]
    arrays[f"{optimizer}_test_error"] = res.outputs.test_error
    arrays[f"{optimizer}_length"] = res.settings["length"]
    summary[optimizer] = {f"N={n}": summarise(err[res.settings["length"] == n]) for n in lengths}
    print(f"{optimizer:>8}: final test error by N (mean over {seeds} seeds): "
          + ", ".join(f"N={n}: {summary[optimizer][f'N={n}']['mean']:.3f}" for n in lengths))
arrays["step"] = res.outputs.step[0]
write_results(args.out, config={"example": "custom_sweep", "lengths": lengths, "steps": steps, "seeds": seeds},
              arrays=arrays, summary=summary)
print(f"results: {args.out} ({', '.join(sorted(p.name for p in args.out.iterdir() if p.is_file()))})")
