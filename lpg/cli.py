"""The ``lpg`` command: argument parsing only; the work is done by the experiments.

    lpg list                                   experiments and what they show
    lpg run NAME [--seeds S] [--set key=value ...] [--out DIR] [--resume]
    lpg plot DIR                               redraw the figures of a finished run

Every setting is validated (``Experiment.resolve``) before anything is compiled; a bad
value prints one line naming the setting and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        _fail(message)


def _fail(message: str):
    print(f"lpg: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lpg", description="Simulations of post-training with policy gradients "
                "(outcome vs process rewards).")
    sub = p.add_subparsers(dest="command", metavar="{list,run,plot}", parser_class=_Parser)
    sub.required = True
    sub.add_parser("list", help="list the experiments")
    run = sub.add_parser("run", help="run an experiment, write its results and figures, print its table")
    run.add_argument("name", help="experiment name (see `lpg list`)")
    run.add_argument("--seeds", type=str, default=None, help="number of seeds (default: the experiment's)")
    run.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                     help="change a setting (repeatable); lists are comma-separated")
    run.add_argument("--out", type=Path, default=None, help="results directory (default: runs/NAME)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    run.add_argument("--distributed", action="store_true",
                     help="multi-host: call jax.distributed.initialize() first (run the same command on every host)")
    plot = sub.add_parser("plot", help="redraw the figures of a results directory")
    plot.add_argument("dir", type=Path)
    return p


def _overrides(groups) -> dict[str, str]:
    out = {}
    for item in (x for group in groups for x in group):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _seeds(raw, default: int) -> int:
    if raw is None:
        return default
    try:
        seeds = int(raw)
    except ValueError:
        seeds = 0
    if seeds < 1:
        _fail(f"--seeds must be an integer >= 1, got {raw!r}")
    return seeds


def _list(args) -> int:
    from lpg.experiments import BROKEN, available

    exps = available()
    width = max(len(n) for n in exps)
    for name, exp in exps.items():
        print(f"{name.ljust(width)}  {exp.description} [default seeds: {exp.default_seeds}]")
    for module, error in sorted(BROKEN.items()):
        print(f"lpg list: experiment module {module!r} failed to import: {error}", file=sys.stderr)
    return 1 if BROKEN else 0


def _run(args) -> int:
    from lpg.experiments import get

    try:
        exp = get(args.name)
        seeds = _seeds(args.seeds, exp.default_seeds)
        config = exp.resolve(_overrides(args.overrides))
    except ValueError as e:
        _fail(str(e))
    out = args.out if args.out is not None else Path("runs") / exp.name
    if args.distributed:
        import jax

        jax.distributed.initialize()
    from lpg.results import is_writer

    talk = is_writer()
    if talk:
        print(f"lpg run {exp.name}: {seeds} seeds -> {out}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        summary = exp.run(config, seeds=seeds, out_dir=out, resume=args.resume)
        paths = exp.plot(out) if talk else []
    except ValueError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        sets = [f"--set {k}={v}" for k, v in _overrides(args.overrides).items()]
        again = " ".join(["lpg run", exp.name, f"--seeds {seeds}", *sets, f"--out {out}", "--resume"])
        print(f"\nlpg: interrupted; continue with: {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if talk:
        print(exp.table(summary))
        print(f"results: {out}  ({time.perf_counter() - t0:.1f}s)")
        for p in paths:
            print(f"figure: {p}")
    return 0


def _plot(args) -> int:
    from lpg.experiments import get
    from lpg.results import read_results

    try:
        name = json.loads((args.dir / "config.json").read_text())["experiment"]
        exp = get(name)
        _, _, summary = read_results(args.dir)
        paths = exp.plot(args.dir)
    except FileNotFoundError as e:
        _fail(f"{args.dir} is not a finished results directory ({e.filename or e} is missing)")
    except (KeyError, json.JSONDecodeError):
        _fail(f"{args.dir / 'config.json'} does not name an experiment")
    except ValueError as e:
        _fail(str(e))
    print(exp.table(summary))
    for p in paths:
        print(f"figure: {p}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return {"list": _list, "run": _run, "plot": _plot}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
