"""Results on disk: what a run leaves behind, written so that a crash never leaves a
half-written file and a run never loses anything it did not write.

A results directory holds four files, each written atomically (a temporary file in
the same directory, ``fsync``, then ``os.replace``; the file gets mode ``0666 & ~umask``):

* ``config.json``  — the fully resolved settings (the experiment's name and the number
  of seeds included);
* ``results.npz``  — the :class:`Table` of results, one layout for every experiment: a
  long table with one row per run and log point, whose columns are the run's
  identifiers (``part``, ``run``, ``seed``), its swept settings and tags, the log point
  (``series``, ``step``) and the measured quantities (a column may carry trailing axes,
  e.g. the likelihood of every tracked context);
* ``summary.json`` — headline numbers, each with the mean, the median and a bootstrap
  95% interval of the mean over seeds (:func:`summarise`);
* ``env.json``     — lpg and jax versions, backend, devices and default float dtype, and
  under ``run`` the record of the run: command line, seed list, profile, start time,
  host name, git commit (when lpg runs from a checkout) and the digest of lpg's code;
  each resumed session is added under ``resumed``, each time seeds were added under
  ``extended`` (:func:`plan_run`).

Non-finite floats are written to JSON as ``null`` so every file is strict JSON.

**Run directories** (:func:`plan_run`, :func:`install`, :class:`RunLock`). A run into
``out`` computes in the staging directory ``out.partial`` beside it (``config.json`` and
``env.json`` are written there first, then the checkpoints) and moves into ``out`` only
once ``summary.json`` is written; an earlier lpg run in ``out`` is replaced then, and only
when allowed. A directory that is neither empty nor an lpg run is never written into, and
no file lpg did not write is ever removed. The lock file ``.out.lock`` beside ``out``
keeps a second run out (a lock whose process is gone is stale and taken over). Faults of
the environment — a file that cannot be read, a corrupted one, a lock held — raise
:class:`Fault`; decisions the caller must change (``resume`` with nothing to resume, other
settings without ``overwrite``) raise ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import io
import json
import math
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

FILES = ("config.json", "results.npz", "summary.json", "env.json")
STAGING_SUFFIX = ".partial"


class Fault(RuntimeError):
    """A fault of the environment rather than of the arguments: a file that cannot be
    read or written, a corrupted or truncated file, a lock held by another run, a missing
    cluster. ``lpg`` prints its message as one line and exits with status 1."""


# ---------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------


def summarise(values, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean, median and a percentile-bootstrap 95% interval of the mean over seeds.

    ``values`` is one number per seed; ``nan`` entries (a seed where the quantity is
    undefined) are dropped and ``n`` counts the rest. With no finite value every
    statistic is ``nan``; with one the interval collapses to it. Returns plain floats.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return {"mean": nan, "median": nan, "ci95": [nan, nan], "n": 0}
    mean = float(np.mean(v))
    if n == 1 or np.all(v == v[0]):
        lo = hi = mean
    else:
        rng = np.random.default_rng(seed)
        boot = np.mean(v[rng.integers(0, n, size=(n_boot, n))], axis=1)
        lo, hi = (float(q) for q in np.quantile(boot, [0.025, 0.975]))
    return {"mean": mean, "median": float(np.median(v)), "ci95": [lo, hi], "n": n}


# ---------------------------------------------------------------------------------
# The results table
# ---------------------------------------------------------------------------------


def _fill_value(dtype):
    if np.issubdtype(dtype, np.floating):
        return np.nan
    if np.issubdtype(dtype, np.integer):
        return -1
    if np.issubdtype(dtype, np.bool_):
        return False
    return ""


def _pad_to(a: np.ndarray, n: int, trailing: tuple) -> np.ndarray:
    """``a`` (leading axis ``n``, or absent: ``None``) padded along its trailing axes to
    ``trailing`` with the fill value of its dtype."""
    out = np.full((n,) + trailing, _fill_value(a.dtype), dtype=a.dtype)
    out[(slice(None),) + tuple(slice(0, d) for d in a.shape[1:])] = a
    return out


class Table:
    """Columns of equal length: one row per run and log point (see the module docstring).

    Built by concatenating parts (:meth:`concat`): a column a part lacks is filled with
    ``nan`` (``-1`` for integers, ``""`` for strings, ``False`` for booleans), and trailing
    axes that differ between parts (e.g. one likelihood per context, with a different
    number of contexts per part) are padded with the same fill values."""

    def __init__(self, columns: dict):
        cols = {str(k): np.asarray(v) for k, v in columns.items()}
        lengths = {k: (v.shape[0] if v.ndim else None) for k, v in cols.items()}
        if any(n is None for n in lengths.values()) or len(set(lengths.values())) > 1:
            raise ValueError(f"table columns must be arrays of one length, got lengths {lengths}")
        for k, v in cols.items():
            if v.dtype == object:
                raise ValueError(f"table column {k!r} must be numeric, boolean or text, got dtype object")
        self.columns = cols

    def __len__(self) -> int:
        return next(iter(self.columns.values())).shape[0] if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise KeyError(f"the results table has no column {name!r}; columns: {', '.join(self.columns)}")
        return self.columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def rows(self, mask) -> "Table":
        return Table({k: v[mask] for k, v in self.columns.items()})

    def where(self, **equal) -> "Table":
        """The rows whose columns equal the given values (``step=-1``: each run's last
        log point)."""
        mask = np.ones(len(self), bool)
        for name, value in equal.items():
            col = self[name]
            if name == "step" and value == -1:
                mask &= col == self._last_step()
            else:
                mask &= col == value
        return self.rows(mask)

    def _last_step(self) -> np.ndarray:
        """Each row's run's last step (rows of a run and series are contiguous)."""
        key = np.char.add(self["run"].astype(str), np.char.add("/", self["series"])) if "series" in self else self["run"]
        _, inverse = np.unique(key, return_inverse=True)
        last = np.full(inverse.max() + 1, np.iinfo(np.int64).min)
        np.maximum.at(last, inverse, self["step"].astype(np.int64))
        return last[inverse]

    def unique(self, name: str) -> np.ndarray:
        return np.unique(self[name])

    def per_run(self, name: str) -> np.ndarray:
        """Column ``name`` once per run (its first row), runs in order of appearance."""
        _, first = np.unique(self["run"], return_index=True)
        return self[name][np.sort(first)]

    def by_run(self, name: str) -> np.ndarray:
        """Column ``name`` as ``(runs, points, …)``: the selection must hold the same
        number of rows of every run, each run's rows together (one series, say)."""
        run, col = self["run"], self[name]
        n_runs = len(np.unique(run))
        if n_runs == 0:
            return col.reshape((0, 0) + col.shape[1:])
        blocks = run.reshape(n_runs, -1) if len(self) % n_runs == 0 else None
        if blocks is None or np.any(blocks != blocks[:, :1]):
            raise ValueError(f"column {name!r}: the selected rows are not {n_runs} runs of equal length; "
                             "select one series first")
        return col.reshape((n_runs, len(self) // n_runs) + col.shape[1:])

    @staticmethod
    def concat(parts: list["Table"]) -> "Table":
        parts = [p for p in parts if len(p)]
        if not parts:
            return Table({})
        names = list(dict.fromkeys(k for p in parts for k in p.columns))
        out = {}
        for name in names:
            present = [p.columns[name] for p in parts if name in p.columns]
            trailing = tuple(max(a.shape[d] for a in present) for d in range(1, present[0].ndim))
            if any(a.ndim != present[0].ndim for a in present):
                raise ValueError(f"table column {name!r} has a different number of axes in different parts")
            dtype = np.result_type(*present)
            pieces = []
            for p in parts:
                if name in p.columns:
                    a = p.columns[name].astype(dtype, copy=False)
                    pieces.append(a if a.shape[1:] == trailing else _pad_to(a, len(p), trailing))
                else:
                    pieces.append(np.full((len(p),) + trailing, _fill_value(np.dtype(dtype)), dtype=dtype))
            out[name] = np.concatenate(pieces)
        return Table(out)


# ---------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either its old self or complete:
    a temporary file in the same directory, flushed and fsynced, then ``os.replace``d.
    The file gets mode ``0666 & ~umask``, as ``open`` would give it. The temporary file
    is removed if anything fails (including ``KeyboardInterrupt``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp creates 0600: give the mode open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def umask() -> int:
    """The process's umask, read without changing it where the platform allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def to_jsonable(obj):
    """Plain-JSON version of ``obj``: NumPy scalars and arrays become numbers and lists,
    tuples become lists, non-finite floats become ``None``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise ValueError(f"cannot write a value of type {type(obj).__name__} to JSON: {obj!r}")


def atomic_write_json(path, obj) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as indented strict JSON (see :func:`to_jsonable`)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------------------------
# Results directories
# ---------------------------------------------------------------------------------


@functools.cache
def code_digest() -> str:
    """SHA-256 (first 16 hex digits) of lpg's own source files: a checkpoint or a
    finished result is reused by ``--resume`` only when computed by the same code."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def env_info() -> dict:
    """Versions and the machine a result was computed on."""
    import jax

    import lpg

    devices = jax.devices()
    return {
        "lpg": lpg.__version__,
        "lpg_code": code_digest(),
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else None,
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "dtype": "float64" if jax.config.jax_enable_x64 else "float32",
    }


def _version(dist: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def npz_bytes(arrays: dict) -> bytes:
    """The bytes of an uncompressed ``.npz`` holding ``arrays`` (names are keys)."""
    buf = io.BytesIO()
    np.savez(buf, **{str(k): np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def is_writer() -> bool:
    """Whether this process writes files: always, except in a multi-process
    (``jax.distributed``) job, where process 0 alone writes."""
    import jax

    return jax.process_index() == 0


def write_results(out_dir, *, config: dict, table: Table, summary: dict, env: dict | None = None) -> None:
    """Write ``config.json``, ``results.npz`` (the :class:`Table`), ``summary.json`` and
    ``env.json`` (``env``, default :func:`env_info`) under ``out_dir``, each atomically;
    ``summary.json`` goes last, so its presence marks a finished run. In a multi-process
    job only process 0 writes."""
    if not is_writer():
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", config)
    atomic_write_bytes(out / "results.npz", npz_bytes(table.columns))
    atomic_write_json(out / "env.json", env_info() if env is None else env)
    atomic_write_json(out / "summary.json", summary)


def read_json(path, fix: str = "") -> object:
    """The JSON in ``path``; a file that is not JSON raises :class:`Fault` naming it (and
    ``fix``, what to do about it)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Fault(f"{path} is truncated or corrupted (not JSON: {e})" + (f"; {fix}" if fix else "")) from None


def load_npz(path, fix: str = "") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``; a truncated or corrupted file raises
    :class:`Fault` naming it (and ``fix``, what to do about it)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (FileNotFoundError, PermissionError):
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise Fault(f"{path} is truncated or corrupted ({why})" + (f"; {fix}" if fix else "")) from None


def read_results(out_dir) -> tuple[dict, Table, dict]:
    """``(config, table, summary)`` from a results directory written by
    :func:`write_results`; a missing file raises ``FileNotFoundError`` naming it, a
    truncated or corrupted one :class:`Fault`."""
    out = Path(out_dir)
    for name in ("config.json", "results.npz", "summary.json"):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} does not exist: {out} is not a finished results directory")
    config = read_json(out / "config.json", f"{out} is not a readable results directory")
    again = "compute the run again"
    if isinstance(config, dict) and "experiment" in config:
        again += f" (lpg run {config['experiment']} --out {shlex.quote(str(out))} --overwrite)"
    table = Table(load_npz(out / "results.npz", again))
    summary = read_json(out / "summary.json", again)
    return config, table, summary


# ---------------------------------------------------------------------------------
# The record of a run
# ---------------------------------------------------------------------------------


@functools.cache
def git_commit() -> dict | None:
    """``{"commit", "dirty"}`` of the git checkout lpg runs from, or ``None`` (an installed
    package, or no git)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def now() -> str:
    """The time, ISO 8601 in UTC to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_record(seeds, **extra) -> dict:
    """The record of a run kept in ``env.json`` under ``run``: the command line (``extra``
    may give it; default ``sys.argv``), the seed list, the start time, the host name, the
    git commit of the checkout lpg runs from (or ``None``) and the digest of lpg's code;
    ``extra`` adds facts such as the profile."""
    git = git_commit()
    return {"command": shlex.join(sys.argv), "seeds": [int(s) for s in seeds], "started": now(),
            "hostname": socket.gethostname(), "git_commit": git and git["commit"], "git_dirty": git and git["dirty"],
            "code": code_digest(), **extra}


def recorded_seeds(config: dict, env: dict) -> list[int]:
    """The seeds of a recorded run: ``env.json``'s list, else ``0 .. seeds-1``."""
    seeds = (env.get("run") or {}).get("seeds") if isinstance(env, dict) else None
    return [int(s) for s in seeds] if isinstance(seeds, list) else list(range(int(config.get("seeds", 0))))


def fmt_seeds(seeds) -> str:
    """A seed list in words: ``0..7`` when consecutive, else the list (shortened)."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        return "none"
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ",".join(map(str, seeds[:8])) + (f",… ({len(seeds)} seeds)" if len(seeds) > 8 else "")


def _fmt_value(v) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v))
    return "unset" if v is _UNSET else str(v)


_UNSET = object()


def differences(recorded: dict, recorded_seed_list, want: dict, seeds) -> list[str]:
    """Each setting (and the seeds) where a recorded run departs from ``want``, in words:
    ``N (recorded 128, now 12)``."""
    a, b = to_jsonable(recorded), to_jsonable(want)
    out = []
    for key in dict.fromkeys([*b, *a]):
        if key == "seeds":
            continue
        va, vb = a.get(key, _UNSET), b.get(key, _UNSET)
        if va != vb:
            out.append(f"{key} (recorded {_fmt_value(va)}, now {_fmt_value(vb)})")
    if [int(s) for s in recorded_seed_list] != [int(s) for s in seeds]:
        out.append(f"seeds (recorded {fmt_seeds(recorded_seed_list)}, now {fmt_seeds(seeds)})")
    return out


# ---------------------------------------------------------------------------------
# Run directories: staging, the lock, replacing an earlier run
# ---------------------------------------------------------------------------------


def staging_dir(out) -> Path:
    """Where a run into ``out`` computes until it has finished: ``out.partial`` beside it."""
    out = Path(out)
    return out.with_name(out.name + STAGING_SUFFIX)


def discard(stage: Path) -> None:
    """Remove a staging directory whose run was refused before it computed anything: a
    fresh run's record, or a seed extension's record and links to the finished run's
    chunks (only lpg's own files are ever there)."""
    shutil.rmtree(stage, ignore_errors=True)


def lock_file(out) -> Path:
    """The lock of runs into ``out``: ``.NAME.lock`` beside it."""
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


def _backup_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.replaced")


_TMP = re.compile(r"^\..+\.tmp$")
_LOCK = re.compile(r"^\..+\.lock$")


def _lpg_entry(d: Path, entry: str, experiment: str | None) -> bool:
    """Whether ``d/entry`` is something lpg writes into a run of ``experiment``: its
    files, ``checkpoint/``, a leftover temporary file of an atomic write, its figures;
    in a report, ``REPORT.md`` and the sub-runs (with their staging and locks)."""
    if entry in FILES or entry == "checkpoint" or _TMP.match(entry):
        return True
    if experiment is None:
        return False
    stems = {experiment, experiment.replace("-", "_")}
    if any(entry == f"{stem}.{ext}" for stem in stems for ext in ("png", "pdf")):
        return True
    if experiment == "report":
        if entry == "REPORT.md" or _LOCK.match(entry):
            return True
        sub = inspect_dir(d / entry)
        return sub.kind in ("finished", "unfinished", "empty") and not sub.foreign
    return False


@dataclasses.dataclass(frozen=True)
class DirState:
    """What a directory holds: ``kind`` is ``missing``, ``file`` (not a directory),
    ``empty``, ``finished`` (an lpg run with ``summary.json``), ``unfinished`` (an lpg
    run without it, or only files lpg writes) or ``foreign`` (anything else); ``config``
    and ``env`` are the run's record, ``foreign`` the entries lpg did not write."""

    path: Path
    kind: str
    config: dict | None = None
    env: dict | None = None
    foreign: tuple[str, ...] = ()

    @property
    def seeds(self) -> list[int]:
        return recorded_seeds(self.config or {}, self.env or {})


def _try_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def inspect_dir(d) -> DirState:
    """The :class:`DirState` of directory ``d`` (a ``config.json`` that is not an lpg
    record does not make an lpg run)."""
    d = Path(d)
    if not d.exists():
        return DirState(d, "missing")
    if not d.is_dir():
        return DirState(d, "file")
    entries = sorted(os.listdir(d))
    if not entries:
        return DirState(d, "empty")
    config = _try_json(d / "config.json") if "config.json" in entries else None
    if not (isinstance(config, dict) and isinstance(config.get("experiment"), str)):
        foreign = tuple(e for e in entries if not _lpg_entry(d, e, None) or e == "config.json")
        return DirState(d, "foreign" if foreign else "unfinished", foreign=foreign)
    env = _try_json(d / "env.json") if "env.json" in entries else None
    foreign = tuple(e for e in entries if not _lpg_entry(d, e, config["experiment"]))
    kind = "finished" if "summary.json" in entries else "unfinished"
    return DirState(d, kind, config, env if isinstance(env, dict) else {}, foreign)


def recorded_run(out) -> DirState | None:
    """The lpg run recorded for output directory ``out``: the one in its staging
    directory (an interrupted run, or a finished one not yet moved in), else the one in
    ``out``; ``None`` when neither holds a record. A record that is not JSON raises
    :class:`Fault`."""
    for d in (staging_dir(out), Path(out)):
        if (d / "config.json").is_file():
            config = read_json(d / "config.json", f"{d} cannot be resumed; start again with --overwrite")
            if isinstance(config, dict) and isinstance(config.get("experiment"), str):
                return inspect_dir(d)
    return None


def _list(entries, n: int = 4) -> str:
    entries = list(entries)
    return ", ".join(entries[:n]) + (f" and {len(entries) - n} more" if len(entries) > n else "")


def _pid_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux ``/proc``), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(lock: dict) -> bool:
    """Whether the process that wrote ``lock`` still runs (a lock from another host is
    taken to be alive: it cannot be checked from here)."""
    if lock.get("hostname") != socket.gethostname():
        return True
    pid = lock.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = lock.get("pid_start")
    return start is None or _pid_start(pid) in (None, start)


class RunLock:
    """``with RunLock(out):`` one run at a time into ``out``. The lock is a file beside
    ``out`` (:func:`lock_file`) created exclusively, holding the owner's pid, host, start
    and command; one left by a process that is gone (same host, the pid dead or reused)
    is stale and taken over. A live one raises :class:`Fault`. Only the writing process
    of a multi-process job takes it."""

    def __init__(self, out, command: str | None = None):
        self.out = Path(out)
        self.path = lock_file(self.out)
        self.command = command
        self.held = False

    def __enter__(self) -> "RunLock":
        if not is_writer():
            return self
        check_out(self.out)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "pid_start": _pid_start(os.getpid()), "hostname": socket.gethostname(),
              "started": now(), "command": self.command or shlex.join(sys.argv)}
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                other = self._read_other()
                if other is not None and _alive(other):
                    where = "" if other.get("hostname") == me["hostname"] else f" on host {other.get('hostname')}"
                    raise Fault(f"{self.out} is in use by another lpg run (pid {other.get('pid')}{where}, started "
                                f"{other.get('started')}): wait for it to finish or choose another output directory; "
                                f"if no such run is alive, delete {self.path}") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise Fault(f"could not take the lock {self.path}: delete it if no lpg run into {self.out} is alive")

    def _read_other(self) -> dict | None:
        """The lock's record; ``None`` for an unreadable one that stays unreadable (its
        writer died between creating and writing it)."""
        import time

        for _ in range(10):
            rec = _try_json(self.path)
            if isinstance(rec, dict) or not self.path.exists():
                return rec if isinstance(rec, dict) else None
            time.sleep(0.05)
        return None

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


class Plan(NamedTuple):
    """What :func:`plan_run` decided: ``action`` is ``reuse`` (``out`` holds this run,
    finished: read it), ``fresh`` (compute in ``stage``, empty but for the record) or
    ``resume`` (continue the run in ``stage`` from its checkpoints). ``blocks``: the
    seed counts that end the run's blocks of seeds (:func:`seed_blocks`), each computed
    as a sweep of its own."""

    action: str
    stage: Path
    out: Path
    blocks: tuple[int, ...] = ()


ACTIONS = ("reuse", "fresh", "resume")


def seed_blocks(env, n: int) -> tuple[int, ...]:
    """The blocks of a run's ``n`` seeds, as the seed counts that end them: ``(n,)`` for a
    run started with all its seeds; a run extended from ``S0`` seeds (``--resume --seeds
    S``, :func:`plan_run`) has ``(S0, S)``, one block more for each extension, recorded
    under ``run.extended`` in ``env.json`` (``env``)."""
    run = env.get("run") if isinstance(env, dict) else None
    added = run.get("extended") if isinstance(run, dict) else None
    ends = [e.get("seeds_before") for e in added if isinstance(e, dict)] if isinstance(added, list) else []
    ends = [int(b) for b in ends if isinstance(b, int) and 0 < b < n]
    return (*sorted(set(ends)), int(n))


def total_timing(timing: dict, env) -> dict:
    """``timing`` (``summary.json``'s, of this session) plus that of the run it extended
    (recorded in ``env.json``, ``env``, when seeds were added): the time the results cost."""
    run = env.get("run") if isinstance(env, dict) else None
    added = run.get("extended") if isinstance(run, dict) else None
    before = added[-1].get("timing_before") if isinstance(added, list) and added and isinstance(added[-1], dict) \
        else None
    if not isinstance(before, dict):
        return timing

    def plus(a: dict, b: dict) -> dict:
        out = dict(a)
        for key, value in b.items():
            if isinstance(value, dict):
                out[key] = plus(a.get(key) if isinstance(a.get(key), dict) else {}, value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = float(a.get(key) or 0.0) + float(value)
        return out

    return plus(timing, before)


def adds_seeds(here: "DirState", want: dict, seeds) -> bool:
    """Whether ``want`` with ``seeds`` is the run recorded in ``here`` with seeds added:
    the same settings, and its seed list a strict prefix of ``seeds``."""
    old, new = [int(s) for s in here.seeds], [int(s) for s in seeds]
    return (here.config is not None and len(new) > len(old) and new[:len(old)] == old
            and not differences(here.config, old, want, old))


def check_out(out) -> None:
    """``out`` can take a run: not a file, below a directory (not a file), and writable
    with its parent (``ValueError`` or :class:`Fault` naming what to do otherwise)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a directory: choose another output directory")
    parent = out.parent
    while not parent.exists() and not parent.is_symlink() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{out} cannot be a directory: {parent} is a file; choose another output directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Fault(f"cannot write beside {out}: {parent} is not writable (a run is staged in "
                    f"{staging_dir(out).name} beside its output directory); choose another output directory")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise Fault(f"{out} is not writable (read-only): make it writable or choose another output directory")


def _recover(out: Path, stage: Path) -> None:
    """Finish an :func:`install` that a crash cut between its two renames."""
    backup = _backup_dir(out)
    if not backup.exists():
        return
    if not out.exists():
        if (stage / "summary.json").is_file():
            os.rename(stage, out)
        else:
            os.rename(backup, out)
            return
    shutil.rmtree(backup, ignore_errors=True)


def _in_place(out: Path) -> bool:
    """Whether ``out`` must be filled rather than replaced: the current directory (or
    one above it) or a mount point."""
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    real = out.resolve()
    return real == cwd or real in cwd.parents or os.path.ismount(real)


def plan_run(out, want: dict, seeds, *, resume: bool = False, overwrite: bool = False, record: dict | None = None,
             say: Callable[[str], None] | None = None) -> Plan:
    """Decide where a run of ``want`` (``config.json``: ``experiment``, ``seeds`` and the
    settings) with ``seeds`` goes, under :class:`RunLock`, and prepare its staging
    directory (a ``fresh`` one gets ``config.json`` and ``env.json`` with the
    :func:`run_record` now). ``out`` must be missing, empty or an lpg run:

    * ``resume``: the run in the staging directory (an interrupted one) is continued, a
      finished one there moved in; else a finished run in ``out`` is reused. The record
      must match ``want`` and ``seeds`` (``ValueError`` naming each difference); nothing
      to resume is a ``ValueError``. Seeds extending a finished run's seed list add
      seeds to it (:func:`adds_seeds`): it is staged with its checkpoints and resumed,
      only the new seeds computed, as their own block (:func:`seed_blocks`); the finished
      run stays in ``out`` until the extended one replaces it, and each extension is
      recorded under ``run.extended`` in ``env.json``.
    * a new run: a finished run in ``out`` with the same settings, seeds and lpg code is
      reused unless ``overwrite``; one with others is replaced once the new run has
      finished, and only with ``overwrite``. An interrupted run in the staging directory
      is discarded only with ``overwrite``. Entries lpg did not write are never removed:
      a run that holds some is not replaced.

    In a multi-process job process 0 decides and the others follow."""
    out = Path(out)
    if out.is_symlink():
        out = out.resolve()
    stage = staging_dir(out)
    import jax

    if jax.process_count() == 1:
        return _plan(out, stage, want, seeds, resume, overwrite, record, say or (lambda text: None))
    from jax.experimental import multihost_utils

    code, error, plan = 0, None, None
    if is_writer():
        try:
            plan = _plan(out, stage, want, seeds, resume, overwrite, record, say or (lambda text: None))
            code = 1 + ACTIONS.index(plan.action)
        except Exception as e:  # noqa: BLE001 — re-raised below, after the others know
            error = e
    code = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
    if error is not None:
        raise error
    if code == 0:
        raise Fault(f"process 0 could not prepare {out}: see its error")
    if plan is None:  # the others read the blocks of seeds from the record process 0 has written
        plan = Plan(ACTIONS[code - 1], stage, out, seed_blocks(_try_json(stage / "env.json"), len(seeds)))
    return plan


def _plan(out: Path, stage: Path, want: dict, seeds, resume, overwrite, record, say) -> Plan:
    if out.name.endswith(STAGING_SUFFIX):
        target = out.with_name(out.name[: -len(STAGING_SUFFIX)])
        raise ValueError(f"{out} is where a run into {target} is staged: give {target} as the output directory")
    check_out(out)
    _recover(out, stage)
    here = inspect_dir(out)
    if here.kind == "foreign":
        raise ValueError(f"{out} is not empty and holds no lpg run ({_list(here.foreign)}): lpg writes only into "
                         "a new or empty directory or over an earlier lpg run; choose another output directory")
    staged = inspect_dir(stage)
    if staged.kind == "file" or staged.kind == "foreign" or (staged.config is None and staged.foreign):
        raise ValueError(f"{stage} exists and was not written by lpg: move it away (a run into {out} is staged "
                         "there until it has finished)")
    if resume:
        if staged.kind == "finished" and adds_seeds(staged, want, seeds):
            install(stage, out, say)  # seeds are added to it from out, like to any finished run
            say(f"the run in {stage} had finished; moved it into {out}")
            here, staged = inspect_dir(out), inspect_dir(stage)
        if staged.config is not None:
            diff = differences(staged.config, staged.seeds, want, seeds)
            if diff:
                why = (": seeds are added to a finished run only; finish this one first (--resume without --seeds)"
                       if adds_seeds(staged, want, seeds) else "")
                raise ValueError(f"resume: the run recorded in {stage} has other settings: {'; '.join(diff)}{why}")
            if staged.kind == "finished":
                install(stage, out, say)
                say(f"the run in {stage} had finished; moved it into {out}")
                return Plan("reuse", stage, out)
            _note_resume(stage, record)
            say(f"resuming the interrupted run in {stage}")
            return Plan("resume", stage, out, seed_blocks(_try_json(stage / "env.json"), len(seeds)))
        if here.kind == "finished":
            if adds_seeds(here, want, seeds):
                return _extend(out, stage, here, want, seeds, record, say)
            diff = differences(here.config, here.seeds, want, seeds)
            if diff:
                raise ValueError(f"resume: the run in {out} has other settings: {'; '.join(diff)}")
            say(f"{out} holds this run, finished: nothing to resume")
            return Plan("reuse", stage, out)
        if here.kind == "unfinished":
            raise ValueError(f"resume: {out} holds an unfinished run without the record needed to resume it (written "
                             "by an earlier lpg): start it again with --overwrite")
        raise ValueError(f"resume: nothing to resume: {out} holds no lpg run and {stage} does not exist; "
                         "run without --resume to start one")
    if staged.kind != "missing":
        if staged.config is not None and not overwrite:
            what = "a finished run not yet moved into it" if staged.kind == "finished" else "an interrupted run"
            raise ValueError(f"{stage} holds {what} into {out}: continue it with --resume, or discard it and start "
                             "again with --overwrite")
        shutil.rmtree(stage)
        if staged.config is not None:
            say(f"discarded the interrupted run in {stage}")
    if here.kind in ("finished", "unfinished"):
        if here.config is None:
            diff = ["an unfinished run of an earlier lpg, without its record"]
        else:
            diff = differences(here.config, here.seeds, want, seeds)
            code = (here.env or {}).get("lpg_code")
            if code != code_digest():
                diff.append(f"lpg code (recorded {code}, now {code_digest()})")
        if here.kind == "finished" and not diff and not overwrite:
            started = ((here.env or {}).get("run") or {}).get("started")
            say(f"{out} already holds this run{f' (started {started})' if started else ''}: showing it "
                "(--overwrite computes it again)")
            return Plan("reuse", stage, out)
        if not overwrite:
            what = f"a finished {here.config['experiment']} run" if here.kind == "finished" else "an unfinished run"
            more = ""
            if here.kind == "finished" and adds_seeds(here, want, seeds) and len(diff) == 1:
                more = (f", or add --resume to add seeds {fmt_seeds(list(seeds)[len(here.seeds):])} to it without "
                        "computing the others again")
            raise ValueError(f"{out} holds {what} that differs: {'; '.join(diff)}; add --overwrite to replace it once "
                             f"the new run has finished{more}, or choose another output directory")
        if here.foreign:
            raise ValueError(f"{out} holds files lpg did not write ({_list(here.foreign)}): move them away before "
                             "replacing the run in it, or choose another output directory")
        if _in_place(out):
            raise ValueError(f"{out} is the current directory or a mount point and holds an earlier run, which "
                             "cannot be replaced in place: choose another output directory")
        say(f"{out} holds an earlier run: it is replaced once this one has finished")
    env = {**env_info(), "run": run_record(seeds, **(record or {}))}
    stage.mkdir(parents=True)
    try:
        atomic_write_json(stage / "config.json", want)
        atomic_write_json(stage / "env.json", env)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # nothing of this run was recorded: leave nothing behind
        raise
    return Plan("fresh", stage, out)


def _extend(out: Path, stage: Path, here: DirState, want: dict, seeds, record, say) -> Plan:
    """Stage the finished run in ``out`` with ``seeds`` added (:func:`adds_seeds`): its
    record with the new seed list and an entry under ``run.extended``, and its
    checkpoints (hard links where the filesystem allows, else copies; chunks are only
    ever replaced, never rewritten, so ``out`` stays as it is). The run then resumes:
    the old seeds are read from their checkpoints, the new ones computed as a block of
    their own (:func:`seed_blocks`)."""
    old, seeds = list(here.seeds), [int(s) for s in seeds]
    added = fmt_seeds(seeds[len(old):])
    code = (here.env or {}).get("lpg_code")
    if code != code_digest():
        raise ValueError(f"resume: seeds {added} cannot be added to the run in {out}: it was computed by other lpg "
                         f"code (recorded {code}, now {code_digest()}); run all {len(seeds)} seeds as a new run "
                         "(without --resume, and --overwrite to replace it) or into another output directory")
    if not (out / "checkpoint").is_dir():
        raise ValueError(f"resume: seeds {added} cannot be added to the run in {out}: its checkpoints "
                         f"({out / 'checkpoint'}) are gone; run all {len(seeds)} seeds as a new run (without --resume, "
                         "and --overwrite to replace it)")
    if here.foreign:
        raise ValueError(f"{out} holds files lpg did not write ({_list(here.foreign)}): move them away before adding "
                         "seeds to the run in it (it is replaced by the run with more seeds)")
    if _in_place(out):
        raise ValueError(f"{out} is the current directory or a mount point, whose run cannot be replaced in place by "
                         "one with more seeds: copy it to another output directory and add the seeds there")
    env = dict(here.env or {})
    run = dict(env.get("run") or {})
    git = git_commit()
    summary = _try_json(out / "summary.json")
    run.setdefault("extended", []).append({
        "at": now(), "hostname": socket.gethostname(), "command": (record or {}).get("command", shlex.join(sys.argv)),
        "git_commit": git and git["commit"], "code": code_digest(), "seeds_before": len(old),
        "seeds_added": seeds[len(old):], "timing_before": summary.get("timing") if isinstance(summary, dict) else None,
        "env": env_info()})
    env["run"] = {**run, "seeds": seeds}
    if stage.exists():
        shutil.rmtree(stage)  # lpg's leftovers without a record (checked by _plan): nothing to resume there
    stage.mkdir(parents=True)
    try:
        shutil.copytree(out / "checkpoint", stage / "checkpoint", copy_function=_link_or_copy,
                        ignore=shutil.ignore_patterns(".*.tmp"))
        atomic_write_json(stage / "config.json", want)
        atomic_write_json(stage / "env.json", env)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    say(f"adding seeds {added} to the finished run in {out} ({fmt_seeds(old)} are read from its checkpoints): "
        f"computed in {stage}, the run with all {len(seeds)} seeds replaces it once finished")
    return Plan("resume", stage, out, seed_blocks(env, len(seeds)))


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _note_resume(stage: Path, record: dict | None) -> None:
    """Append this session to ``env.json``'s ``run.resumed``."""
    env = _try_json(stage / "env.json")
    env = env if isinstance(env, dict) else env_info()
    run = env.setdefault("run", {})
    session = {"at": now(), "hostname": socket.gethostname(), "command": (record or {}).get("command",
                                                                                          shlex.join(sys.argv))}
    git = git_commit()
    session.update(git_commit=git and git["commit"], code=code_digest())
    run.setdefault("resumed", []).append(session)
    atomic_write_json(stage / "env.json", env)


def install(stage, out, say: Callable[[str], None] | None = None) -> None:
    """Move the finished run in ``stage`` into ``out``: ``out`` (missing, empty, or an
    earlier lpg run) is set aside, ``stage`` renamed into its place, then the earlier run
    removed; a crash between the renames is finished by the next run into ``out``. The
    current directory or a mount point, which cannot be renamed, is filled in place
    instead (it is empty then). Process 0 alone moves files."""
    if not is_writer():
        return
    stage, out = Path(stage), Path(out)
    keep = f"the finished run stays in {stage}: move them away and run again with --resume to move it in"
    if out.is_dir() and _in_place(out):
        left = [e for e in sorted(os.listdir(out)) if not os.path.lexists(stage / e)]
        if left:
            raise Fault(f"{out} is no longer empty ({_list(left)}); {keep}")
        names = sorted(os.listdir(stage), key=lambda n: n == "summary.json")  # summary.json last
        for name in names:
            os.replace(stage / name, out / name)
        os.rmdir(stage)
        return
    here = inspect_dir(out)
    if here.kind == "file" or here.foreign:
        raise Fault(f"{out} now holds {'a file' if here.kind == 'file' else 'files lpg did not write'} "
                    f"({_list(here.foreign) if here.foreign else out.name}); {keep}")
    backup = _backup_dir(out)
    if out.exists():
        os.rename(out, backup)
    os.rename(stage, out)
    _fsync_dir(out.parent)
    if backup.exists():
        try:
            shutil.rmtree(backup)
        except OSError as e:
            if say:
                say(f"could not remove the replaced run {backup} ({e.strerror}); delete it by hand")
