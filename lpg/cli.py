"""The ``lpg`` command: argument parsing only; the work is done by the experiments.

    lpg list                                   experiments and what they show
    lpg show NAME                              an experiment's settings: type, default, bounds, help
    lpg run NAME [--seeds S] [--first-seed F] [--profile P] [--set key=value ...] [--out DIR] [--overwrite]
    lpg run NAME --out DIR --resume            continue (or show) the run recorded in DIR
    lpg run NAME --out DIR --resume --seeds S  add seeds to the finished run in DIR (the others are not recomputed)
    lpg run NAME --distributed [--coordinator HOST:PORT --num-processes N --process-id I]
                                               one run over several processes (SLURM: detected)
    lpg run NAME --help                        the same settings, with the run options
    lpg report [--profile P] [--seeds S] [--only A,B] [--skip A,B] [--out DIR] [--resume]
    lpg plot DIR                               redraw the figures of a finished run or report
    lpg --version

Every setting is validated from the experiment's spec before anything is compiled; a
bad value prints one line naming the setting and exits with status 2. ``lpg run paper``
is an alias of ``lpg report`` (``--set profile=… only=… skip=…``).

Every fault is one line ``lpg: error: …`` naming the file or setting and what to do,
never a traceback (``LPG_DEBUG=1`` shows it): status 2 when the command must change (a
bad argument, a conflict with what ``--out`` holds), 1 for a fault of the environment (a
file that cannot be read or written, a corrupted file, a lock held by another run, no
cluster or a lost process), 130 when interrupted; output cut off by a closed pipe
(``| head``) ends quietly with status 141, as a process killed by SIGPIPE would.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import sys
import time
from pathlib import Path

EXIT_FAULT = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
REPORT_ALIAS = "paper"
MAX_SEED = 2**31 - 1  # lpg.sweep.MAX_SEED, without importing jax to parse arguments


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
    run.add_argument("--first-seed", type=str, default=None,
                     help="first seed: the seeds are F..F+S-1 (default: 0)")
    run.add_argument("--profile", default=None, help="settings profile: default (CPU), gpu, quick")
    run.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                     help="change a setting (repeatable); lists are comma-separated")
    run.add_argument("--out", type=Path, default=None, help="results directory (default: runs/NAME)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run recorded in --out with its recorded settings (or show it if finished); "
                          "with a larger --seeds, add seeds to a finished run without computing the others again")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an earlier run in --out (once the new one has finished), or discard an "
                          "interrupted one")
    run.add_argument("--distributed", action="store_true",
                     help="several processes: call jax.distributed.initialize() first (run the same command in "
                          "every process; under SLURM or Open MPI the flags below are detected)")
    run.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                     help="with --distributed: process 0's address and a free port (default: detected, or "
                          "JAX_COORDINATOR_ADDRESS)")
    run.add_argument("--num-processes", default=None, metavar="N",
                     help="with --distributed: the number of processes (default: detected)")
    run.add_argument("--process-id", default=None, metavar="I",
                     help="with --distributed: this process's id, 0..N-1 (default: detected)")
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


def _integer(raw, flag: str, low: int, high: int) -> int | None:
    """``raw`` (a command-line string) as an integer in ``[low, high]``; ``None`` stays."""
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        _fail(f"{flag} must be an integer in [{low}, {high}], got {raw!r}")
    return value


def _seeds(raw) -> int | None:
    return _integer(raw, "--seeds", 1, MAX_SEED + 1)


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


def _recorded(exp, args, out: Path):
    """``(config, seeds, profile)`` of the run recorded for ``out`` (``--resume``): the
    recorded settings, checked against every ``--set``, ``--seeds``, ``--first-seed`` and
    ``--profile`` given (each conflict named, with both values). More ``--seeds`` than a
    finished run has, extending its seed list, add seeds to it."""
    from lpg.results import fmt_seeds, recorded_run, staging_dir

    found = recorded_run(out)
    if found is None:
        _fail(f"--resume: nothing to resume: {out} holds no lpg run and {staging_dir(out)} does not exist; "
              "run without --resume to start one")
    rec = found.config
    if rec["experiment"] != exp.name:
        _fail(f"--resume: {found.path} holds a run of {rec['experiment']!r}, not {exp.name!r}: "
              f"resume it with lpg run {rec['experiment']} --out {shlex.quote(str(out))} --resume")
    settings = {k: v for k, v in rec.items() if k not in ("experiment", "seeds")}
    try:
        config = exp.resolve(settings)
    except ValueError as e:
        _fail(f"--resume: the settings recorded in {found.path / 'config.json'} are no longer valid: {e}")
    seeds = found.seeds
    profile = ((found.env or {}).get("run") or {}).get("profile")
    conflicts = []
    for key, raw in _overrides(args.overrides).items():
        if key not in exp.settings:
            _fail(f"unknown setting {key!r} for experiment {exp.name!r}; allowed: {', '.join(sorted(exp.settings))}")
        try:
            value = exp.settings[key].validate(key, exp.settings[key].parse(key, raw))
        except ValueError as e:
            _fail(str(e))
        if json.dumps(value) != json.dumps(config[key]):
            fmt = lambda v: ",".join(map(str, v)) if isinstance(v, list) else str(v)  # noqa: E731
            conflicts.append(f"{key} (recorded {fmt(config[key])}, given {fmt(value)})")
    count, first = _seeds(args.seeds), _integer(args.first_seed, "--first-seed", 0, MAX_SEED)
    same_first = first is None or (seeds and first == seeds[0])
    if not same_first:
        conflicts.append(f"--first-seed (recorded {seeds[0] if seeds else 'none'}, given {first})")
    if count is not None and count > len(seeds) and seeds and same_first:
        more = list(range(seeds[0], seeds[0] + count))
        if more[-1] > MAX_SEED:
            _fail(f"--seeds {count} from the recorded first seed {seeds[0]} goes past the largest seed {MAX_SEED}")
        if more[:len(seeds)] != seeds:
            conflicts.append(f"--seeds (recorded {len(seeds)}, given {count}: seeds {fmt_seeds(more)} do not extend "
                             f"the recorded {fmt_seeds(seeds)})")
        elif found.kind != "finished":
            conflicts.append(f"--seeds (recorded {len(seeds)}, given {count}: seeds are added to a finished run only; "
                             "finish this one first with --resume alone)")
        else:
            seeds = more  # seeds added to the finished run: the new ones are computed, the others read
    elif count is not None and count != len(seeds):
        conflicts.append(f"--seeds (recorded {len(seeds)}, given {count})")
    if args.profile is not None and profile is not None and args.profile != profile:
        conflicts.append(f"--profile (recorded {profile}, given {args.profile})")
    if conflicts:
        _fail(f"--resume: the run recorded in {found.path} has other settings: {'; '.join(conflicts)}; resume without "
              "them, or start a new run (another --out, or --overwrite)")
    if len(seeds) < 1:
        _fail(f"--resume: {found.path} records no seeds; start the run again with --overwrite")
    return config, seeds, profile


def _resume_hint(name: str, out: Path) -> str:
    """The line printed on an interruption: the command that continues the run."""
    from lpg.results import Fault, recorded_run

    try:
        found = recorded_run(out)
    except (Fault, OSError):
        found = None
    if found is None:
        return "lpg: interrupted before the run was recorded; run the same command again"
    if found.kind == "finished" and found.path == Path(out):
        return f"lpg: interrupted; the run has finished in {out} (lpg plot {shlex.quote(str(out))} draws its figures)"
    again = shlex.join(["lpg", "run", name, "--out", str(out), "--resume"])
    return f"lpg: interrupted; the finished chunks are kept in {found.path}; continue with: {again}"


def _run(args) -> int:
    if args.name == REPORT_ALIAS:
        if args.distributed:
            _fail(f"--distributed runs one experiment, not lpg run {REPORT_ALIAS} (lpg report): run each experiment "
                  "with lpg run NAME --distributed, or the report in one process")
        sets = _overrides(args.overrides)
        unknown = set(sets) - {"profile", "only", "skip", "cpu_skip"}
        if unknown:
            _fail(f"unknown setting {sorted(unknown)[0]!r} for 'lpg run paper' (an alias of lpg report); "
                  "allowed: profile, only, skip, cpu_skip")
        opts = {"profile": sets.get("profile", args.profile or "default"), "seeds": _seeds(args.seeds),
                **{k: _names(sets[k]) for k in ("only", "skip", "cpu_skip") if k in sets}}
        return _report_with(opts, args.out or Path("runs") / REPORT_ALIAS, args.resume)
    from lpg.experiments import get

    cluster = _cluster(args)
    try:
        exp = get(args.name)
        if args.help:
            args.run_parser.print_help()
            print(f"\n{_show_text(exp)}")
            return 0
        out = args.out if args.out is not None else Path("runs") / exp.name
        if args.resume and args.overwrite:
            _fail("--resume and --overwrite exclude each other: --resume continues the run recorded in --out, "
                  "--overwrite starts a new one")
        if args.resume:
            config, seeds, profile = _recorded(exp, args, out)
        else:
            profile = args.profile or "default"
            config = exp.resolve(_overrides(args.overrides), profile=profile)
            count = _seeds(args.seeds) or exp.profile(profile).seeds
            first = _integer(args.first_seed, "--first-seed", 0, MAX_SEED) or 0
            if first + count - 1 > MAX_SEED:
                _fail(f"--first-seed {first} with --seeds {count} goes past the largest seed {MAX_SEED}; "
                      "lower either")
            seeds = range(first, first + count)
    except ValueError as e:
        _fail(str(e))
    if args.distributed:
        _distributed(cluster, exp.name, out, args.own_process)
    from lpg.results import fmt_seeds, is_writer
    from lpg.sweep import LostProcess

    talk = is_writer()
    header = [f"lpg run {exp.name}: {len(seeds)} seeds ({fmt_seeds(seeds)}) -> {out}"]

    def say(text: str) -> None:  # the header first, once the run goes ahead: a refusal stays one line
        while header:
            print(header.pop(), file=sys.stderr)
        print(f"lpg: {text}", file=sys.stderr)

    record = {"command": shlex.join(["lpg", *args.argv]), "profile": profile}
    t0 = time.perf_counter()
    try:
        summary = exp.run(config, seeds=seeds, out_dir=out, resume=args.resume, overwrite=args.overwrite,
                          record=record, say=say if talk else None)
        paths = exp.plot(out) if talk else []
    except ValueError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        print("\n" + _resume_hint(exp.name, out), file=sys.stderr)
        return EXIT_INTERRUPTED
    except LostProcess as e:
        hint = _resume_hint(exp.name, out).removeprefix("lpg: ")
        print(f"lpg: error: --distributed: {_one_line(e)}; {hint}", file=sys.stderr)
        _exit_now(EXIT_FAULT)
    if talk:
        print(exp.text(summary))
        print(f"results: {out}  ({time.perf_counter() - t0:.1f}s)")
        for p in paths:
            print(f"figure: {p}")
    return 0


def _cluster(args) -> dict:
    """``--coordinator``, ``--num-processes`` and ``--process-id`` as keyword arguments of
    ``jax.distributed.initialize``, validated before anything is initialised; the ones
    not given are left to its detection (SLURM, Open MPI, ``JAX_COORDINATOR_ADDRESS``)."""
    flags = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
             "--process-id": args.process_id}
    given = [flag for flag, value in flags.items() if value is not None]
    if given and not args.distributed:
        _fail(f"{given[0]} is an option of --distributed: add --distributed, or drop {given[0]} to run in one process")
    kw = {}
    if args.coordinator is not None:
        host, sep, port = args.coordinator.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            _fail(f"--coordinator must be HOST:PORT (process 0's host, a port in [1, 65535]), got {args.coordinator!r}")
        kw["coordinator_address"] = args.coordinator
    n = _integer(args.num_processes, "--num-processes", 1, MAX_SEED)
    if n is not None:
        kw["num_processes"] = n
    if args.process_id is not None:
        pid = _integer(args.process_id, "--process-id", 0, MAX_SEED)
        if n is not None and pid >= n:
            _fail(f"--process-id must be below --num-processes {n} (the ids are 0..{n - 1}), got {args.process_id!r}")
        kw["process_id"] = pid
    return kw


# A process that stops answering (killed, its host lost) is declared dead after this long, and the
# others then stop with an error rather than wait for it: long enough for a busy host (the heartbeat is
# sent by a thread of its own, compiling does not hold it up), short next to JAX's default of 100 s.
HEARTBEAT_TIMEOUT_S = 20


def _exit_now(code: int) -> None:
    """End the process now, its output flushed, without the interpreter's teardown: in a
    multi-process job that lost a process, JAX would first wait at a shutdown barrier for
    every process (a dead one never comes), then abort with a page of log after the line
    already printed; after a Ctrl-C that left XLA busy in a worker thread, tearing the
    interpreter down under it can crash."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _lost(child: int, name: str, out: Path) -> None:
    """The line for the ``child`` process JAX aborted because another process of the job
    was lost, once its lock on ``out`` (process 0's) is released."""
    from lpg.results import lock_file

    lock = lock_file(out)
    try:
        if json.loads(lock.read_text()).get("pid") == child:
            lock.unlink()
    except (OSError, ValueError, AttributeError):
        pass
    hint = _resume_hint(name, out).removeprefix("lpg: ")
    print(f"lpg: error: --distributed: another process of the job has stopped (JAX's health check ended this one); "
          f"{hint}", file=sys.stderr)


def _distributed(cluster: dict, name: str, out: Path, supervised: bool) -> None:
    """Join the job (:func:`lpg.cluster.join`); no cluster to join is one line. When
    ``supervised`` (the ``lpg`` command itself), the run goes on in a child process
    (:func:`lpg.cluster.supervise`), so that JAX's abort of a process whose peer is lost
    (process 0 dead, or another one silent for ``HEARTBEAT_TIMEOUT_S``) ends with lpg's
    line naming the command that continues the run, and status 1."""
    from lpg import cluster as job
    from lpg.results import Fault

    if supervised:
        job.supervise(lambda child: _lost(child, name, out))
    try:
        job.join(cluster, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
    except (ValueError, RuntimeError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise Fault(f"--distributed: no cluster to join ({why}); run the same command in every process under SLURM "
                    "or Open MPI (detected automatically), or give --coordinator HOST:PORT --num-processes N "
                    "--process-id I, or drop --distributed to run in one process") from None


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
        again = shlex.join(["lpg", "report", "--profile", options["profile"], "--out", str(out), "--resume"])
        print(f"\nlpg: interrupted; continue with: {again}", file=sys.stderr)
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
    from lpg.results import read_results, recorded_run

    d = args.dir
    if d.exists() and not d.is_dir():
        _fail(f"{d} is a file: lpg plot takes the results directory of a finished run (such as runs/NAME)")
    if not (d / "summary.json").is_file():
        found = recorded_run(d)
        if found is not None and found.kind != "finished":
            name = found.config["experiment"]
            _fail(f"{d} holds no finished run: its run was interrupted ({found.path}); continue it with "
                  f"{shlex.join(['lpg', 'run', name, '--out', str(d), '--resume'])}")
    if not d.exists():
        _fail(f"{d} does not exist: lpg plot takes the results directory of a finished run (such as runs/NAME)")
    try:
        name = json.loads((d / "config.json").read_text())["experiment"]
        if name == "report":
            from lpg import report

            _, _, summary = read_results(d)
            paths = report.replot(d)
            print(report.text(summary))
        else:
            exp = get(name)
            _, _, summary = read_results(d)
            paths = exp.plot(d)
            print(exp.text(summary))
    except FileNotFoundError as e:
        _fail(f"{d} is not a finished results directory ({e.filename or e} is missing)")
    except (KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        _fail(f"{d / 'config.json'} does not name an experiment: {d} is not an lpg results directory")
    except ValueError as e:
        _fail(str(e))
    for p in paths:
        print(f"figure: {p}")
    return 0


def _one_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def _fault(e: Exception, command: str) -> int:
    """One line for an exception that reached the top, and its exit status."""
    from lpg.results import Fault

    if isinstance(e, Fault):
        message = _one_line(e)
    elif isinstance(e, OSError):
        what = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on device"}.get(e.errno)
        where = e.filename if e.filename is not None else ""
        message = f"{where + ': ' if where else ''}{what or e.strerror or _one_line(e)}"
        if command == "run":
            message += "; check the path and its permissions, or choose another --out"
        else:
            message += "; check the path and its permissions"
    elif isinstance(e, MemoryError):
        message = "out of memory: lower --seeds, the sizes (batch, N) or chunk_size"
    else:
        message = f"{type(e).__name__}: {_one_line(e)} (an lpg bug? LPG_DEBUG=1 shows the traceback)"
    print(f"lpg: error: {message}", file=sys.stderr)
    return EXIT_FAULT


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit after a closed pipe says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _after_interrupt(own_process: bool) -> None:
    """Once a Ctrl-C has been handled: forget it, and end the process now with status 130
    when it is lpg's own (``own_process``: the ``lpg`` command, not a caller of
    :func:`main`) or when the interrupt left XLA busy in a worker thread
    (:mod:`lpg.interrupt`). The finished chunks are on disk and the lock is released by
    then, and tearing the interpreter down after an interrupted JAX computation can abort
    (``terminate called without an active exception``, status 134)."""
    from lpg import interrupt

    interrupt.clear()
    if own_process or interrupt.abandoned():
        _exit_now(EXIT_INTERRUPTED)


def main(argv=None) -> int:
    own_process = argv is None  # the lpg command itself (a caller of main passes argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = ""
    from lpg import interrupt

    interrupt.install()
    try:
        args = _parser().parse_args(argv)
        args.argv, args.own_process, command = argv, own_process, args.command
        code = {"list": _list, "show": _show, "run": _run, "report": _report, "plot": _plot}[command](args)
        sys.stdout.flush()  # here, where a closed pipe can still be told apart from a fault
        if code == EXIT_INTERRUPTED:
            _after_interrupt(own_process)
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("\nlpg: interrupted", file=sys.stderr)
        _after_interrupt(own_process)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 — one line, not a traceback
        if os.environ.get("LPG_DEBUG") == "1":
            raise
        try:
            return _fault(e, command)
        except BrokenPipeError:
            return EXIT_FAULT


if __name__ == "__main__":
    sys.exit(main())
