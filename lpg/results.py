"""Results on disk: what a run leaves behind, written so that a crash never leaves a
half-written file.

A results directory holds four files, each written atomically (a temporary file in
the same directory, ``fsync``, then ``os.replace``):

* ``config.json``  — the fully resolved settings (the experiment's name included);
* ``results.npz``  — the :class:`Table` of results, one layout for every experiment: a
  long table with one row per run and log point, whose columns are the run's
  identifiers (``part``, ``run``, ``seed``), its swept settings and tags, the log point
  (``series``, ``step``) and the measured quantities (a column may carry trailing axes,
  e.g. the likelihood of every tracked context);
* ``summary.json`` — headline numbers, each with the mean, the median and a bootstrap
  95% interval of the mean over seeds (:func:`summarise`);
* ``env.json``     — lpg and jax versions, backend, devices and default float dtype.

Non-finite floats are written to JSON as ``null`` so every file is strict JSON.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

FILES = ("config.json", "results.npz", "summary.json", "env.json")


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
    The temporary file is removed if anything fails (including ``KeyboardInterrupt``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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


def write_results(out_dir, *, config: dict, table: Table, summary: dict) -> None:
    """Write ``config.json``, ``results.npz`` (the :class:`Table`), ``summary.json`` and
    ``env.json`` under ``out_dir``, each atomically; ``summary.json`` goes last, so its
    presence marks a finished run. In a multi-process job only process 0 writes."""
    if not is_writer():
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", config)
    atomic_write_bytes(out / "results.npz", npz_bytes(table.columns))
    atomic_write_json(out / "env.json", env_info())
    atomic_write_json(out / "summary.json", summary)


def clear_results(out_dir) -> None:
    """Remove the results files of an earlier run from ``out_dir`` (``summary.json``
    first), so a new run that is interrupted never leaves the old results beside it."""
    if not is_writer():
        return
    out = Path(out_dir)
    for name in ("summary.json",) + tuple(f for f in FILES if f != "summary.json"):
        (out / name).unlink(missing_ok=True)


def read_results(out_dir) -> tuple[dict, Table, dict]:
    """``(config, table, summary)`` from a results directory written by
    :func:`write_results`; a missing file raises ``FileNotFoundError`` naming it."""
    out = Path(out_dir)
    for name in ("config.json", "results.npz", "summary.json"):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} does not exist: {out} is not a finished results directory")
    config = json.loads((out / "config.json").read_text())
    with np.load(out / "results.npz") as z:
        table = Table({k: z[k] for k in z.files})
    summary = json.loads((out / "summary.json").read_text())
    return config, table, summary
