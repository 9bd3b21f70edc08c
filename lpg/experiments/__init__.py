"""Registry of named experiments: one module per experiment, each registering an
:class:`Experiment` subclass with :func:`register`. Modules in this package are
discovered automatically (any module whose name does not start with ``_``).

An experiment owns its defaults (every key ``--set`` may change, with the default's
type), validates a resolved config before anything is compiled, runs a sweep over
seeds, writes its results under ``out_dir``, draws its figures from what is on disk,
and formats a short text table of its summary. Most experiments only define the hooks
``compute`` (their sweeps, each through :meth:`Experiment.sweep_part`), ``summarise`` and
``draw``; :meth:`Experiment.run` and :meth:`Experiment.plot` do the rest.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from pathlib import Path
from typing import Any, ClassVar

from lpg.results import clear_results, read_results, write_results
from lpg.sweep import sweep

REGISTRY: dict[str, "Experiment"] = {}


class Experiment:
    name: ClassVar[str]
    description: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]
    default_seeds: ClassVar[int] = 4
    record_total: ClassVar[bool] = False
    """Whether :meth:`run` adds the wall time of compute and summary as ``timing.total_s``."""

    def resolve(self, overrides: dict[str, str] | None = None) -> dict[str, Any]:
        """Defaults updated with ``--set key=value`` strings, each parsed to the default's
        type; unknown keys and unparsable values raise ``ValueError`` naming the key."""
        config = dict(self.defaults)
        for key, raw in (overrides or {}).items():
            if key not in self.defaults:
                raise ValueError(
                    f"unknown setting {key!r} for experiment {self.name!r}; allowed: {', '.join(sorted(self.defaults))}"
                )
            config[key] = parse_value(key, raw, self.defaults[key])
        self.validate(config)
        return config

    def validate(self, config: dict[str, Any]) -> None:
        """Raise ``ValueError`` (parameter, value, what is allowed) for a bad config."""

    def run(self, config: dict[str, Any], *, seeds: int, out_dir: Path, resume: bool = False) -> dict:
        """Run, write results under ``out_dir`` and return the summary: by default
        :meth:`compute`, then :meth:`summarise`, with the timings under
        ``summary["timing"]`` (plus ``total_s`` where :attr:`record_total`)."""
        t0 = time.perf_counter()
        out_dir = Path(out_dir)
        if not resume:
            clear_results(out_dir)
        arrays, timing = self.compute(config, seeds=seeds, out_dir=out_dir, resume=resume)
        summary = self.summarise(arrays, config)
        summary["timing"] = {**timing, "total_s": time.perf_counter() - t0} if self.record_total else timing
        write_results(out_dir, config={"experiment": self.name, "seeds": int(seeds), **config}, arrays=arrays,
                      summary=summary)
        return summary

    def compute(self, config: dict[str, Any], *, seeds: int, out_dir: Path, resume: bool) -> tuple[dict, dict]:
        """The experiment's sweeps: per-run arrays and their compile/run timings."""
        raise NotImplementedError

    def summarise(self, arrays: dict, config: dict[str, Any]) -> dict:
        """``summary.json`` from the per-run arrays."""
        raise NotImplementedError

    def plot(self, out_dir: Path) -> list[Path]:
        """Draw the figures from the results saved in ``out_dir``; return their paths."""
        config, arrays, summary = read_results(out_dir)
        return self.draw(arrays, config, summary, Path(out_dir))

    def draw(self, arrays: dict, config: dict[str, Any], summary: dict, out_dir: Path) -> list[Path]:
        """The figures of saved results (called by :meth:`plot`)."""
        raise NotImplementedError

    def sweep_part(self, fn, grid, config: dict[str, Any], *, seeds: int, out_dir: Path, resume: bool, part: str,
                   desc: str | None = None, vmap_size: int | str | None = None, **facts):
        """One of the experiment's sweeps, checkpointed under ``out_dir/checkpoint/part``
        and resumable only with the same ``config`` and ``facts``."""
        return sweep(fn, grid, seeds=seeds, chunk_size=config["chunk_size"] or None,
                     out_dir=Path(out_dir) / "checkpoint" / part, resume=resume, desc=f"{self.name}:{desc or part}",
                     fingerprint={"experiment": self.name, **facts, "config": config}, vmap_size=vmap_size)

    def table(self, summary: dict) -> str:
        """A short text table of the summary, printed by ``lpg run``."""
        raise NotImplementedError

    @staticmethod
    def compute_line(summary: dict) -> str:
        """Total compile + run seconds of the sweeps timed in ``summary["timing"]``."""
        total = sum(v["compile_s"] + v["run_s"] for v in summary.get("timing", {}).values())
        return f"compute {total:.1f}s (compile + run)"


def parse_value(key: str, raw, default):
    """Parse a ``--set`` string to the type of ``default`` (bool, int, float, str, or a
    list of those written comma-separated)."""
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, (list, tuple)):
            inner = default[0] if default else ""
            return [parse_value(key, part.strip(), inner) for part in raw.split(",") if part.strip()]
        return raw
    except ValueError:
        kind = type(default).__name__ if not isinstance(default, (list, tuple)) else "comma-separated list"
        raise ValueError(f"setting {key!r} must be a {kind}, got {raw!r}") from None


def register(cls):
    """Class decorator: add an experiment to :data:`REGISTRY` under ``cls.name``."""
    if cls.name in REGISTRY:
        raise ValueError(f"experiment {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls


BROKEN: dict[str, str] = {}
"""Experiment modules that failed to import, with their error: one broken module must
not hide the others (``lpg list`` reports it, ``lpg run`` of an unknown name names it)."""


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_") or mod.name in BROKEN:
            continue
        try:
            importlib.import_module(f"{__name__}.{mod.name}")
        except Exception as err:  # noqa: BLE001 - reported, not swallowed
            BROKEN[mod.name] = f"{type(err).__name__}: {err}"


def get(name: str) -> Experiment:
    _discover()
    if name not in REGISTRY:
        broken = "".join(f"; module {m!r} failed to import ({e})" for m, e in sorted(BROKEN.items()))
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(sorted(REGISTRY))}{broken}")
    return REGISTRY[name]


def available() -> dict[str, Experiment]:
    _discover()
    return dict(sorted(REGISTRY.items()))
