"""A custom sweep in the setting of claim C1 (PAPER.md §4): SGD with the paper's
adaptive step ``η_t = 1/(4 + 2‖g_t‖²)`` and with the constant step ``η = 1/(4N)`` (the
largest the worst-case analysis allows at length N: ``log p_w(y*|x)`` is N-smooth), across
the response length N, on the planted-margin task (``‖φ‖ ≤ 1`` and margin exactly γ at
every N, as C1 assumes). It prints the final test error per N for each step rule: C1 says
the adaptive step's error does not grow with N, while the constant step's grows like N
(here until it nears 1).

Every run starts from a base model with likelihood ``α = 1e-3`` on ``y*`` for every
context at every N. From the uniform start (``α = k^-N``) the adaptive step would first
spend about ``2·ln(1/α) = 2N ln k`` steps per context leaving it (each step lowers the
loss by less than 1/2), a log factor that ``Õ`` hides but that at this budget would grow
with N; ``lpg run sgd-lr`` fits it apart (``T(ε) = T0 + C/ε``) from both starts.

The length is a traced grid setting (the padded, masked path: one compiled program
for every N up to ``N_MAX``); the optimiser decides the program, so it is static: one
sweep per optimiser. Results go to ``runs/custom_sweep`` in lpg's results format and a
second run with ``--resume`` reuses the checkpoints.

    python examples/custom_sweep.py [--tiny] [--out DIR] [--resume]
"""

import argparse
import math
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
steps, seeds = (40, 2) if args.tiny else (800, 8)
ALPHA = 1e-3  # the base model's likelihood of y*, every context and N
task = lpg.make_planted(jax.random.PRNGKey(0), k=4, N=N_MAX, gamma=0.5)


def make_run(optimizer):
    alg = lpg.SGD(batch_size=1, optimizer=optimizer)

    def run(key, length):  # one run; the length arrives as a traced scalar
        k_test, k_run = jax.random.split(key)
        # planted_alpha_base spreads log α over the task's N_MAX positions; a run scores the
        # first `length` of them, so it is handed log α · N_MAX / length
        base = lpg.tasks.planted_alpha_base(task, log_alpha=math.log(ALPHA) * N_MAX / length)
        problem = lpg.make_problem(task, key=k_test, n_test=512, base=base, length=length)
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
write_results(args.out, config={"example": "custom_sweep", "lengths": lengths, "steps": steps, "seeds": seeds,
                      "alpha": ALPHA},
              table=Table(columns), summary=summary)
print(f"results: {args.out} ({', '.join(sorted(p.name for p in args.out.iterdir() if p.is_file()))})")
