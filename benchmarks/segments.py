"""What saving a run's training state every segment costs (lpg.segments, issue 12).

One chunk of ``barrier`` runs at its defaults, checkpointed, computed three ways in the
same process: in one call (``LPG_SEGMENT_S=0``), in segments of the default length (60 s:
a short first segment, then the rest) and in segments of ``--short`` seconds (several
saves of the runs' state). Prints the compile time of each program (the whole-chunk one
and the segmented one) and the median run time of ``--reps`` repetitions of each way,
with the ratios to the whole-chunk call measured in the same run, and checks that the
three give the same results bit for bit.

    python benchmarks/segments.py [--seeds 2] [--reps 3] [--short 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from lpg.experiments import barrier, get
from lpg.sweep import sweep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--short", type=float, default=2.0, help="seconds per segment of the third way")
    args = ap.parse_args(argv)
    fn = barrier.make_run(get("barrier").resolve({}))
    ways = {"one call": "0", "segments of 60 s": "60", f"segments of {args.short:g} s": str(args.short)}
    times = {w: [] for w in ways}
    compile_s, outputs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps + 1):  # the first repetition compiles (its run time is not counted)
            for way, seconds in ways.items():
                os.environ["LPG_SEGMENT_S"] = seconds
                res = sweep(fn, {}, seeds=args.seeds, chunk_size=args.seeds, out_dir=Path(tmp) / f"{rep}-{seconds}",
                            progress=False)
                if rep == 0:
                    compile_s[way] = res.compile_s
                    outputs[way] = jax.tree_util.tree_leaves(res.outputs)
                else:
                    times[way].append(res.run_s)
    same = all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f") for way in ways
               for a, b in zip(outputs["one call"], outputs[way]))
    base = statistics.median(times["one call"])
    print(f"barrier defaults, {args.seeds} seeds in one chunk, {args.reps} repetitions, backend {jax.default_backend()}")
    print(f"{'way':<22} {'compile_s':>9} {'run_s (median)':>14} {'ratio':>6}")
    for way in ways:
        med = statistics.median(times[way])
        print(f"{way:<22} {compile_s[way]:>9.1f} {med:>14.2f} {med / base:>6.3f}")
    print(f"results bit-identical across the three ways: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
