"""What live progress costs: the same sweep with the step reports on and off.

    python benchmarks/progress_overhead.py [--quick] [--repeats 7] [--only pg,hitting]

Two workloads, each a :func:`lpg.sweep.sweep` of 8 seeds, run one seed after the other
(``vmap_size=1``, the CPU default) and as one ``vmap`` of 8:

* ``pg``: Figure 1 at a small size (d = k = 16, N = 32, mixture contexts): PG with the
  ±1 outcome reward, batch-mean baseline, sampled path, batch 64, Adagrad lr 0.1,
  token-averaged loss; 2000 steps logged every 50 (40 log points, a report every 4).
* ``hitting``: :func:`lpg.hitting.run_until` as in the scaling experiments (k = 4,
  N = 12, batch 1, process reward, a check every 20 steps) with a target never reached,
  so every run spends its budget of 40000 steps (a report every 4000 steps).

``on`` is what a user gets: the reports compiled in and a terminal bar redrawn ten
times a second (stderr is a stand-in terminal). ``off`` is the code without the
feature: :data:`lpg.progress.CALLBACKS` ``= False`` (read when the loops are traced, so
the program is traced and compiled without the callbacks; the sweep keeps one program
per setting) and ``LPG_PROGRESS=0``. The two alternate, ``on`` first in every other
round, after one warm-up each. Two clocks: the sweep's wall time without compilation
(``SweepResult.run_s``) and the CPU time of the process over the sweep call (every
thread: XLA's, the callbacks', the bar's). Printed per workload and seed mode, for each
clock: the median of each variant, the overhead ``median(on) / median(off) − 1``, the
median of the paired ratios of each round (``paired``) and the ratio of the fastest
runs (``min``, the least disturbed by other jobs on a shared machine).

On a shared machine the rounds scatter by several percent, more than the reports cost:
the ``off / off`` line (``pg`` one seed at a time against itself) shows by how much. So
the cost of one report is also measured where it can be seen: the ``pg`` sweep, one
seed at a time, with 200 log points and a report at each (``REPORTS_PER_LOOP`` raised:
1600 reports a sweep instead of 80) against ``off``; the extra time over the reports is
the cost of one, and the overhead of the default reports of ``pg`` follows from it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

import lpg
from lpg import progress
from lpg.hitting import run_until
from lpg.metrics import sequence_log_likelihoods
from lpg.sweep import sweep

SEEDS = 8
POINTS, MANY_POINTS = 40, 200  # log points of a pg run: as timed, and to measure the cost of one report
SEED_MODES = {"one at a time": 1, "vmap of 8": None}


class Terminal(io.StringIO):
    """Where the bar goes while timed: stderr as a terminal would be."""

    def isatty(self) -> bool:
        return True


def pg_run(steps: int, points: int = POINTS):
    def run(key):
        task = lpg.make_teacher(jax.random.PRNGKey(0), d=16, k=16, N=32, context="mixture", n_centres=16, sigma=0.05)
        problem = lpg.make_problem(task, key=jax.random.PRNGKey(1), n_test=256, track_x=task.centres)
        alg = lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), advantage="batch_mean", batch_size=64,
                                 optimizer="adagrad", loss_norm="token")
        c = lpg.train(alg, problem, lpg.hyper(lr=0.1), key, steps=steps, log_every=steps // points).curves
        return {"test_error": c.test_error, "log_queries": c.log_queries}

    return run


def never(problem, w):
    """A target that costs what the likelihood target costs and never holds (log p > 0)."""
    ll = sequence_log_likelihoods(problem.fmap, w, problem.track_x, problem.track_y, problem.length)
    return jnp.min(ll) > 0.0


def hitting_run(budget: int):
    def run(key):
        task = lpg.make_teacher(jax.random.PRNGKey(0), d=8, k=4, N=12)
        problem = lpg.make_problem(task, key=jax.random.PRNGKey(1), n_test=32, track_x=task.centres)
        alg = lpg.PolicyGradient("process", batch_size=1)
        hit = run_until(alg, problem, lpg.hyper(lr=0.5), key, max_steps=budget, target=never, check_every=20)
        return {"steps": hit.steps, "log_queries": hit.log_queries}

    return run


@contextlib.contextmanager
def variant(on: bool):
    """The progress feature on (reports compiled in, a bar on a terminal) or off."""
    saved = progress.CALLBACKS, os.environ.get(progress.ENV_SWITCH)
    progress.CALLBACKS = on
    os.environ[progress.ENV_SWITCH] = "1" if on else "0"
    try:
        with contextlib.redirect_stderr(Terminal()):
            yield
    finally:
        progress.CALLBACKS = saved[0]
        if saved[1] is None:
            os.environ.pop(progress.ENV_SWITCH)
        else:
            os.environ[progress.ENV_SWITCH] = saved[1]


def measure(fn, vmap_size, repeats: int, reports_per_loop: int = progress.REPORTS_PER_LOOP,
            control: bool = False) -> dict:
    """``{clock: {"off", "on", "overhead", "paired", "min"}}`` for the clocks ``wall`` and
    ``cpu``; ``on`` with ``reports_per_loop``, or (``control``) ``off`` again."""
    times = {(clock, on): [] for clock in ("wall", "cpu") for on in (False, True)}
    default = progress.REPORTS_PER_LOOP
    progress.REPORTS_PER_LOOP = reports_per_loop  # read when traced; the sweep keeps a program per value
    try:
        for r in range(-1, repeats):  # round -1: warm-up (compiles)
            for on in ((True, False) if r % 2 else (False, True)):
                with variant(on and not control):
                    cpu = time.process_time()
                    res = sweep(fn, {}, seeds=SEEDS, vmap_size=vmap_size)
                    cpu = time.process_time() - cpu
                if r >= 0:
                    times["wall", on].append(res.run_s)
                    times["cpu", on].append(cpu)
    finally:
        progress.REPORTS_PER_LOOP = default
    out = {}
    for clock in ("wall", "cpu"):
        on, off = times[clock, True], times[clock, False]
        out[clock] = {"off": statistics.median(off), "on": statistics.median(on),
                      "overhead": statistics.median(on) / statistics.median(off) - 1,
                      "paired": statistics.median(a / b for a, b in zip(on, off)) - 1,
                      "min": min(on) / min(off) - 1}
    return out


def row(name: str, mode: str, clock: str, m: dict) -> str:
    return (f"{name:10} {mode:14} {clock:5} {m['off']:8.3f} {m['on']:8.3f} {100 * m['overhead']:8.2f}% "
            f"{100 * m['paired']:7.2f}% {100 * m['min']:7.2f}%")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps: 800 for pg, 10000 for hitting")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each variant (default 7)")
    parser.add_argument("--only", default="pg,hitting", help="workloads, comma-separated (default: both)")
    args = parser.parse_args(argv)
    pg_steps = 800 if args.quick else 2000
    workloads = {"pg": pg_run(pg_steps), "hitting": hitting_run(10000 if args.quick else 40000)}
    print(f"lpg {lpg.__version__}, jax {jax.__version__}, {jax.devices()[0].device_kind}, {SEEDS} seeds, "
          f"median of {args.repeats} runs each, alternated")
    print(f"{'workload':10} {'seeds':14} {'clock':5} {'off s':>8} {'on s':>8} {'overhead':>9} {'paired':>8} "
          f"{'min':>8}")
    results = {}
    for name in args.only.split(","):
        for mode, vmap_size in SEED_MODES.items():
            results[name, mode] = measure(workloads[name], vmap_size, args.repeats)
            for clock, m in results[name, mode].items():
                print(row(name, mode, clock, m), flush=True)
    if "pg" in args.only.split(","):
        control = measure(workloads["pg"], 1, args.repeats, control=True)["wall"]
        print(row("off / off", "one at a time", "wall", control))
        default = SEEDS * -(-POINTS // progress.stride(POINTS))  # reports of the pg sweep
        base = results["pg", "one at a time"]["wall"]["off"]
        m = measure(pg_run(pg_steps, MANY_POINTS), 1, args.repeats, reports_per_loop=MANY_POINTS)["wall"]
        print(row(f"pg {MANY_POINTS}/run", "one at a time", "wall", m))
        for label, key in (("median", "overhead"), ("paired", "paired"), ("min", "min")):
            cost = m[key] * m["off"] / (SEEDS * MANY_POINTS)
            print(f"one report ({label}): {1e6 * cost:.0f} us; the {default} reports of the pg sweep (one at a time, "
                  f"{base:.2f} s): {100 * cost * default / base:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
