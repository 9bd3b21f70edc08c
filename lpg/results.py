"""Results on disk: what a run leaves behind, written so that a crash never leaves a
half-written file.

A results directory holds four files, each written atomically (a temporary file in
the same directory, ``fsync``, then ``os.replace``):

* ``config.json``  — the fully resolved settings (the experiment's name included);
* ``results.npz``  — per-run arrays (leading axis: runs), e.g. metric curves at the
  log points, summaries of the final weights, reward-query counts (natural logs);
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


def write_results(out_dir, *, config: dict, arrays: dict, summary: dict) -> None:
    """Write ``config.json``, ``results.npz``, ``summary.json`` and ``env.json`` under
    ``out_dir``, each atomically; ``summary.json`` goes last, so its presence marks a
    finished run. In a multi-process job only process 0 writes."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise ValueError(f"arrays[{name!r}] must be a numeric array, got dtype object")
    if not is_writer():
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", config)
    atomic_write_bytes(out / "results.npz", npz_bytes(arrays))
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


def read_results(out_dir) -> tuple[dict, dict, dict]:
    """``(config, arrays, summary)`` from a results directory written by
    :func:`write_results`; a missing file raises ``FileNotFoundError`` naming it."""
    out = Path(out_dir)
    for name in ("config.json", "results.npz", "summary.json"):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} does not exist: {out} is not a finished results directory")
    config = json.loads((out / "config.json").read_text())
    with np.load(out / "results.npz") as z:
        arrays = {k: z[k] for k in z.files}
    summary = json.loads((out / "summary.json").read_text())
    return config, arrays, summary
