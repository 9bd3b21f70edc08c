"""The ``lpg`` command: argument parsing only; the work is done by the experiments.

    lpg list                                   experiments and what they show
    lpg show NAME                              an experiment's settings: type, default, bounds, help
    lpg run NAME [--seeds S] [--profile P] [--set key=value ...] [--out DIR] [--resume]
    lpg run NAME --help                        the same settings, with the run options
    lpg report [--profile P] [--seeds S] [--only A,B] [--skip A,B] [--out DIR] [--resume]
    lpg plot DIR                               redraw the figures of a finished run or report
    lpg --version

Every setting is validated from the experiment's spec before anything is compiled; a
bad value prints one line naming the setting and exits with status 2. ``lpg run paper``
is an alias of ``lpg report`` (``--set profile=… only=… skip=…``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
REPORT_ALIAS = "paper"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        _fail(message)


def _fail(message: str):
    print(f"lpg: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _names(raw: str | None) -> list[str] | None:
    return None if raw is None else [n.strip() for n in raw.split(",") if n.strip()]


def _parser() -> argparse.ArgumentParser:
    from lpg import __version__

    p = _Parser(prog="lpg", description="Simulations of post-training with policy gradients "
                "(outcome vs process rewards).")
    p.add_argument("--version", action="version", version=f"lpg {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{list,show,run,report,plot}", parser_class=_Parser)
    sub.required = True
    sub.add_parser("list", help="list the experiments")
    show = sub.add_parser("show", help="an experiment's settings (type, default, bounds, help) and profiles")
    show.add_argument("name", help="experiment name (see `lpg list`)")
    run = sub.add_parser("run", add_help=False,
                         help="run an experiment, write its results and figures, print its table")
    run.add_argument("name", help="experiment name (see `lpg list`)")
    run.add_argument("-h", "--help", action="store_true", help="show the run options and the experiment's settings")
    run.add_argument("--seeds", type=str, default=None, help="number of seeds (default: the profile's)")
    run.add_argument("--profile", default="default", help="settings profile: default (CPU), gpu, quick")
    run.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                     help="change a setting (repeatable); lists are comma-separated")
    run.add_argument("--out", type=Path, default=None, help="results directory (default: runs/NAME)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    run.add_argument("--distributed", action="store_true",
                     help="multi-host: call jax.distributed.initialize() first (run the same command on every host)")
    run.set_defaults(run_parser=run)
    report = sub.add_parser("report", help="run every experiment and write REPORT.md (claims C1-C9)")
    report.add_argument("--profile", default="default", help="default (CPU), quick (smoke run) or gpu")
    report.add_argument("--seeds", type=str, default=None, help="seeds of every experiment (default: each profile's)")
    report.add_argument("--only", default=None, help="comma-separated experiments to run (default: all)")
    report.add_argument("--skip", default=None, help="comma-separated experiments to leave out")
    report.add_argument("--cpu-skip", default=None, help="left out on a CPU backend (default: figure1)")
    report.add_argument("--out", type=Path, default=Path("runs") / "report", help="output directory")
    report.add_argument("--resume", action="store_true", help="reuse finished experiments and checkpoints")
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


def _seeds(raw) -> int | None:
    if raw is None:
        return None
    try:
        seeds = int(raw)
    except ValueError:
        seeds = 0
    if seeds < 1:
        _fail(f"--seeds must be an integer >= 1, got {raw!r}")
    return seeds


def _list(args) -> int:
    from lpg.experiments import available

    exps = available()
    width = max(len(n) for n in exps)
    for name, exp in exps.items():
        claims = f" ({', '.join(exp.claims)})" if exp.claims else ""
        print(f"{name.ljust(width)}  {exp.description}{claims} [default seeds: {exp.default_seeds}]")
    return 0


def _show_text(exp) -> str:
    lines = [f"{exp.name}: {exp.description}", f"claims: {', '.join(exp.claims) or '-'}",
             f"default seeds: {exp.default_seeds}", "settings (--set KEY=VALUE):", exp.settings_help()]
    for name, prof in exp.profiles.items():
        sets = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in prof.overrides.items())
        lines.append(f"profile {name}: {prof.seeds} seeds{'; ' + sets if sets else ''}"
                     f"{' (' + prof.note + ')' if prof.note else ''}")
    return "\n".join(lines)


def _show(args) -> int:
    from lpg.experiments import get

    try:
        print(_show_text(get(args.name)))
    except ValueError as e:
        _fail(str(e))
    return 0


def _run(args) -> int:
    if args.name == REPORT_ALIAS:
        sets = _overrides(args.overrides)
        unknown = set(sets) - {"profile", "only", "skip", "cpu_skip"}
        if unknown:
            _fail(f"unknown setting {sorted(unknown)[0]!r} for 'lpg run paper' (an alias of lpg report); "
                  "allowed: profile, only, skip, cpu_skip")
        opts = {"profile": sets.get("profile", args.profile), "seeds": _seeds(args.seeds),
                **{k: _names(sets[k]) for k in ("only", "skip", "cpu_skip") if k in sets}}
        return _report_with(opts, args.out or Path("runs") / REPORT_ALIAS, args.resume)
    from lpg.experiments import get

    try:
        exp = get(args.name)
        if args.help:
            args.run_parser.print_help()
            print(f"\n{_show_text(exp)}")
            return 0
        config = exp.resolve(_overrides(args.overrides), profile=args.profile)
        seeds = _seeds(args.seeds) or exp.profile(args.profile).seeds
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
        profile = [] if args.profile == "default" else [f"--profile {args.profile}"]
        again = " ".join(["lpg run", exp.name, f"--seeds {seeds}", *profile, *sets, f"--out {out}", "--resume"])
        print(f"\nlpg: interrupted; continue with: {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if talk:
        print(exp.text(summary))
        print(f"results: {out}  ({time.perf_counter() - t0:.1f}s)")
        for p in paths:
            print(f"figure: {p}")
    return 0


def _report_with(options: dict, out: Path, resume: bool) -> int:
    from lpg import report

    try:
        options = report.resolve(options)
        report.plan(options)  # every experiment's settings validated before anything runs
    except ValueError as e:
        _fail(str(e))
    print(f"lpg report: profile {options['profile']} -> {out}", file=sys.stderr)
    try:
        summary = report.run(options, out, resume=resume)
    except KeyboardInterrupt:
        print(f"\nlpg: interrupted; continue with: lpg report --profile {options['profile']} --out {out} --resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(report.text(summary))
    print(f"report: {out / 'REPORT.md'}")
    return 0


def _report(args) -> int:
    opts = {"profile": args.profile, "seeds": _seeds(args.seeds), "only": _names(args.only),
            "skip": _names(args.skip), "cpu_skip": _names(args.cpu_skip)}
    return _report_with(opts, args.out, args.resume)


def _plot(args) -> int:
    from lpg.experiments import get
    from lpg.results import read_results

    try:
        name = json.loads((args.dir / "config.json").read_text())["experiment"]
        if name == "report":
            from lpg import report

            _, _, summary = read_results(args.dir)
            paths = report.replot(args.dir)
            print(report.text(summary))
        else:
            exp = get(name)
            _, _, summary = read_results(args.dir)
            paths = exp.plot(args.dir)
            print(exp.text(summary))
    except FileNotFoundError as e:
        _fail(f"{args.dir} is not a finished results directory ({e.filename or e} is missing)")
    except (KeyError, json.JSONDecodeError):
        _fail(f"{args.dir / 'config.json'} does not name an experiment")
    except ValueError as e:
        _fail(str(e))
    for p in paths:
        print(f"figure: {p}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return {"list": _list, "show": _show, "run": _run, "report": _report, "plot": _plot}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
