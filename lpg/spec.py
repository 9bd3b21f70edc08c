"""Experiments as declarative specs: typed settings, profiles, sweeps, one output contract.

An experiment (:class:`Experiment`) states what it is — a name, a description, the
claims of PAPER.md §4 it tests — and what it runs:

* **settings**: ``{name: Setting}``, each with a type, a default, bounds or choices and
  one line of help (:func:`Int`, :func:`Real`, :func:`Bool`, :func:`Choice`, and the
  list forms :func:`Ints`, :func:`Reals`, :func:`Choices`). ``--set`` strings are parsed
  and every value is validated from these (finite, in range) before anything compiles;
  ``constraints`` add the relations between settings (:func:`divides`,
  :func:`at_most`, or any ``config -> message | None``);
* **profiles**: ``default`` (the settings' defaults and ``default_seeds``, for a CPU),
  and named overrides such as ``gpu`` (paper scale) and ``quick`` (a smoke run);
* **sweeps**: :meth:`Experiment.sweeps` lists :class:`Sweep` s — a run function, its
  traced grid and the tags of its rows — which :meth:`Experiment.run` executes through
  :func:`lpg.sweep.sweep`, staged in ``out_dir.partial`` (checkpointed under its
  ``checkpoint/<part>``) and moved into ``out_dir`` once finished;
* **summary and figures**: :meth:`Experiment.summarise` and :meth:`Experiment.draw`
  read the results :class:`~lpg.results.Table`; :meth:`Experiment.text` prints the
  summary.

The output contract is the same for every experiment: ``results.npz`` is one long
table (one row per run and log point; :meth:`Experiment.rows`), ``summary.json`` holds
the summary with ``timing = {"compile_s", "run_s", "total_s", "parts": {part: {"compile_s",
"run_s"}}}``, and checkpoints live in ``checkpoint/<part>/``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import jax
import numpy as np

from lpg.results import (RunLock, Table, discard, install, plan_run, read_json, read_results, total_timing,
                         write_results)
from lpg.sweep import SweepResult, run_axis, seed_list, sweep

# ---------------------------------------------------------------------------------
# Typed settings
# ---------------------------------------------------------------------------------

_KINDS = {"int": "integer", "real": "real number", "bool": "boolean", "choice": "choice"}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting of an experiment: its kind, default, bounds or choices and help."""

    kind: str  # "int" | "real" | "bool" | "choice"
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple = ()
    is_list: bool = False
    min_len: int = 1
    distinct: bool = False
    increasing: bool = False

    # -- description ---------------------------------------------------------------

    def allowed(self) -> str:
        """What one value may be, in words: ``an integer >= 1``, ``a real number in (0, 1)``."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(map(repr, self.choices))
        noun = "an integer" if self.kind == "int" else "a real number"
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            return f"{noun} in {'(' if self.open_low else '['}{lo:g}, {hi:g}{')' if self.open_high else ']'}"
        if lo is not None:
            return f"{noun} {'>' if self.open_low else '>='} {lo:g}"
        if hi is not None:
            return f"{noun} {'<' if self.open_high else '<='} {hi:g}"
        return f"a finite {_KINDS[self.kind]}" if self.kind == "real" else noun

    def type_name(self) -> str:
        one = {"int": "int", "real": "float", "bool": "bool", "choice": "choice"}[self.kind]
        return f"list[{one}]" if self.is_list else one

    def describe_list(self) -> str:
        extra = " distinct" if self.distinct else ""
        extra = " increasing" if self.increasing else extra
        return f"a comma-separated list of at least {self.min_len}{extra} values, each {self.allowed()}"

    # -- parsing and validation --------------------------------------------------------

    def parse(self, name: str, raw: str):
        """The value of a ``--set`` string (lists are comma-separated)."""
        if self.is_list:
            return [self._parse_one(name, part.strip()) for part in raw.split(",") if part.strip()]
        return self._parse_one(name, raw.strip())

    def _parse_one(self, name: str, raw: str):
        try:
            if self.kind == "bool":
                low = raw.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if self.kind == "int":
                return int(raw)
            if self.kind == "real":
                return float(raw)
            return raw
        except ValueError:
            want = self.describe_list() if self.is_list else self.allowed()
            raise ValueError(f"setting {name!r} must be {want}, got {raw!r}") from None

    def validate(self, name: str, value):
        """``value`` checked (and normalised: ints stay ints, reals become floats)."""
        if not self.is_list:
            return self._check_one(name, value)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be {self.describe_list()}, got {value!r}")
        values = [self._check_one(f"{name}[{i}]", v) for i, v in enumerate(value)]
        if len(values) < self.min_len:
            raise ValueError(f"{name} must be {self.describe_list()}, got {value!r}")
        if self.distinct and len(set(values)) != len(values):
            raise ValueError(f"{name} must hold distinct values, got {value!r}")
        if self.increasing and any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"{name} must be increasing, got {value!r}")
        return values

    def _check_one(self, name: str, v):
        bad = ValueError(f"{name} must be {self.allowed()}, got {v!r}")
        if self.kind == "bool":
            if not isinstance(v, (bool, np.bool_)):
                raise bad
            return bool(v)
        if self.kind == "choice":
            if v not in self.choices:
                raise bad
            return v
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise bad
        if self.kind == "int":
            if isinstance(v, (float, np.floating)) and not float(v).is_integer():
                raise bad
            v = int(v)
        else:
            v = float(v)
            if not math.isfinite(v):
                raise bad
        if self.low is not None and (v < self.low or (self.open_low and v == self.low)):
            raise bad
        if self.high is not None and (v > self.high or (self.open_high and v == self.high)):
            raise bad
        return v


def Int(default: int, help: str, *, low: int | None = None, high: int | None = None) -> Setting:
    return Setting("int", default, help, low, high)


def Real(default: float, help: str, *, low=None, high=None, open_low=False, open_high=False) -> Setting:
    return Setting("real", default, help, low, high, open_low, open_high)


def Bool(default: bool, help: str) -> Setting:
    return Setting("bool", default, help)


def Choice(default: str, help: str, choices: Iterable[str]) -> Setting:
    return Setting("choice", default, help, choices=tuple(choices))


def Ints(default: list, help: str, *, low=None, high=None, min_len=1, distinct=False, increasing=False) -> Setting:
    return Setting("int", list(default), help, low, high, is_list=True, min_len=min_len, distinct=distinct,
                   increasing=increasing)


def Reals(default: list, help: str, *, low=None, high=None, open_low=False, open_high=False, min_len=1,
          distinct=False, increasing=False) -> Setting:
    return Setting("real", list(default), help, low, high, open_low, open_high, is_list=True, min_len=min_len,
                   distinct=distinct, increasing=increasing)


def Choices(default: list, help: str, choices: Iterable[str], *, min_len=1, distinct=True) -> Setting:
    return Setting("choice", list(default), help, choices=tuple(choices), is_list=True, min_len=min_len,
                   distinct=distinct)


COMMON: dict[str, tuple] = {
    "k": ("int", "vocabulary size", dict(low=2)),
    "N": ("int", "response length", dict(low=1)),
    "d": ("int", "context dimension", dict(low=1)),
    "gamma": ("real", "margin of the planted task", dict(low=0.0, high=1.0, open_low=True)),
    "batch_size": ("int", "contexts per iteration", dict(low=1)),
    "max_steps": ("int", "iteration budget (runs that spend it are censored)", dict(low=1)),
    "check_every": ("int", "iterations between target checks", dict(low=1)),
    "task_seed": ("int", "seed of the planted task", dict(low=0)),
    "n_boot": ("int", "bootstrap resamples of the slope intervals", dict(low=1)),
    "chunk_size": ("int", "seeds per compiled chunk (0: as many as fit in memory, up to all)", dict(low=0)),
}
"""Settings that mean the same in every experiment: kind, help and bounds."""


def common(**defaults) -> dict[str, Setting]:
    """The :data:`COMMON` settings named, with these defaults."""
    return {k: Setting(COMMON[k][0], v, COMMON[k][1], **COMMON[k][2]) for k, v in defaults.items()}


def with_defaults(settings: dict[str, Setting], **defaults) -> dict[str, Setting]:
    """``settings`` with other defaults (a scaled-down variant of an experiment)."""
    unknown = set(defaults) - set(settings)
    if unknown:
        raise ValueError(f"no setting(s) {', '.join(sorted(unknown))} to give a default")
    return {k: dataclasses.replace(s, default=defaults[k]) if k in defaults else s for k, s in settings.items()}


# ---------------------------------------------------------------------------------
# Relations between settings
# ---------------------------------------------------------------------------------

Constraint = Callable[[dict], "str | None"]
"""``config -> None`` when the settings fit together, else the error message."""


def divides(a: str, b: str) -> Constraint:
    """Setting ``a`` must divide setting ``b``."""
    return lambda c: None if c[b] % c[a] == 0 else f"{a} must divide {b}={c[b]}, got {c[a]}"


def at_most(a: str, b: str, why: str = "") -> Constraint:
    """Setting ``a`` must be at most setting ``b``."""
    return lambda c: None if c[a] <= c[b] else f"{a} must be at most {b}={c[b]}{why}, got {c[a]}"


# ---------------------------------------------------------------------------------
# Sweeps and profiles
# ---------------------------------------------------------------------------------


SIZES = frozenset(("N", "Ns", "k", "ks", "d", "M", "n_centres", "n_test", "n_wellposed", "n_samples", "n_contexts",
                   "group_size", "n_probe", "n_coverage_sims"))
"""Setting names that decide array sizes in every experiment that has them (with every
setting whose name holds ``batch``)."""

PER_POINT = -1
"""``Sweep.chunk_size`` for one chunk per grid point (its seeds), so that a chunk of
hitting-time runs stops with its own slowest run."""


class Sweep(NamedTuple):
    """One compiled sweep of an experiment: ``fn(key, **grid point)`` is one run and
    returns a dict of arrays; ``tags`` are constant columns of its rows; ``part`` names
    its checkpoint directory and its rows (``part`` column). ``chunk_size`` ``None``
    takes the experiment's ``chunk_size`` setting (0: all runs in one chunk),
    :data:`PER_POINT` one chunk per grid point; ``facts`` are what else a checkpoint
    must match to be resumed."""

    part: str
    fn: Callable
    grid: Mapping = {}
    tags: Mapping = {}
    chunk_size: int | None = None
    vmap_size: int | str | None = None
    facts: Mapping = {}


def sweep_blocks(sw: Sweep, seeds: np.ndarray, blocks, chunk_size: int | None, out_dir: Path, **kw) -> SweepResult:
    """``sw`` over ``seeds`` as one :func:`lpg.sweep.sweep` gives it, computed as one
    sweep per block of seeds (``blocks``: the seed counts that end them, see
    :func:`lpg.results.seed_blocks`; a run extended by ``--resume --seeds`` has one
    block per extension). Block 0 checkpoints in ``out_dir``, block ``b`` in
    ``out_dir/block_b``; the runs of the blocks are put back in the order of one sweep
    over every seed (grid-major, seed-minor), so that the rows (and the bootstrap
    intervals over them) are those of a run that had every seed from the start."""
    ends = [int(b) for b in blocks if 0 < int(b) < len(seeds)] + [len(seeds)]
    results, start = [], 0
    for b, end in enumerate(ends):
        chunk = {None: chunk_size, PER_POINT: end - start}.get(sw.chunk_size, sw.chunk_size)
        results.append(sweep(sw.fn, dict(sw.grid), seeds=seeds[start:end], chunk_size=chunk,
                             out_dir=out_dir if b == 0 else out_dir / f"block_{b}", **kw))
        start = end
    if len(results) == 1:
        return results[0]
    sizes = np.diff([0, *ends])

    def merge(*leaves):  # each block's (points * its seeds, ...) -> (points * all seeds, ...)
        per_point = [a.reshape((-1, int(n)) + a.shape[1:]) for a, n in zip(leaves, sizes)]
        return np.concatenate(per_point, axis=1).reshape((-1,) + leaves[0].shape[1:])

    settings, seed = run_axis(dict(sw.grid), seeds)
    outputs = jax.tree_util.tree_map(merge, *(r.outputs for r in results))
    return SweepResult(settings, seed, outputs, sum(r.compile_s for r in results), sum(r.run_s for r in results))


class Profile(NamedTuple):
    """Seeds and setting overrides of a named profile (``gpu``, ``quick``)."""

    seeds: int
    overrides: Mapping = {}
    note: str = ""


# ---------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------


class Experiment:
    name: ClassVar[str]
    description: ClassVar[str]
    claims: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[dict[str, Setting]]
    constraints: ClassVar[tuple[Constraint, ...]] = ()
    default_seeds: ClassVar[int] = 4
    profiles: ClassVar[dict[str, Profile]] = {}

    # -- settings --------------------------------------------------------------------

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: (list(s.default) if s.is_list else s.default) for k, s in self.settings.items()}

    def profile(self, name: str) -> Profile:
        """``default``, or one of :attr:`profiles`; without its own, ``quick`` is 2 seeds at
        the defaults and ``gpu`` the default profile."""
        if name in self.profiles:
            return self.profiles[name]
        if name in ("default", "gpu"):
            return Profile(self.default_seeds, {})
        if name == "quick":
            return Profile(2, {})
        raise ValueError(f"profile must be one of {', '.join(map(repr, ['default', *self.profiles]))} for "
                         f"experiment {self.name!r}, got {name!r}")

    def resolve(self, overrides: Mapping[str, Any] | None = None, profile: str = "default") -> dict[str, Any]:
        """The profile's settings updated with ``overrides`` (``--set`` strings are parsed
        to each setting's type), every value and relation validated."""
        values = {**self.profile(profile).overrides, **(overrides or {})}
        config = self.defaults
        for key, raw in values.items():
            if key not in self.settings:
                raise ValueError(f"unknown setting {key!r} for experiment {self.name!r}; "
                                 f"allowed: {', '.join(sorted(self.settings))}")
            config[key] = self.settings[key].parse(key, raw) if isinstance(raw, str) else raw
        for key, setting in self.settings.items():
            config[key] = setting.validate(key, config[key])
        for rule in self.constraints:
            message = rule(config)
            if message:
                raise ValueError(message)
        return config

    def sizes(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The settings of ``config`` that decide array sizes (:data:`SIZES`), named in
        the error when a run does not fit in memory."""
        return {k: config[k] for k in self.settings if k in SIZES or "batch" in k}

    def settings_help(self) -> str:
        """Every setting: name, type, default, what is allowed and its help."""
        lines = []
        for key, s in self.settings.items():
            default = ",".join(map(str, s.default)) if s.is_list else s.default
            allowed = s.describe_list() if s.is_list else s.allowed()
            lines.append(f"  {key} ({s.type_name()}, default {default}): {s.help} [{allowed}]")
        return "\n".join(lines)

    # -- running ---------------------------------------------------------------------

    def sweeps(self, config: dict[str, Any]) -> Iterable[Sweep]:
        """The sweeps of a resolved config, in order."""
        raise NotImplementedError

    def run(self, config: dict[str, Any], *, seeds, out_dir: Path, resume: bool = False, overwrite: bool = False,
            record: dict | None = None, say: Callable[[str], None] | None = None) -> dict:
        """Run every sweep and write ``results.npz`` (the table), ``summary.json`` (with the
        timing), ``config.json`` and ``env.json`` into ``out_dir``; return the summary.

        ``seeds``: a count ``S`` (seeds ``0..S-1``) or a list of seeds. The run computes in
        the staging directory ``out_dir.partial`` (``config.json`` and ``env.json``, with
        ``record`` — e.g. the command line and profile — in ``env.json``'s ``run``, are
        written there first, then the checkpoints) and is moved into ``out_dir`` once it
        has finished; ``out_dir`` must be missing, empty or an earlier lpg run, and one
        run at a time writes it (:class:`lpg.results.RunLock`). ``resume``: continue the
        interrupted run from its checkpoints (bit-identical to an uninterrupted run), or
        return the finished one with its recorded timing; its record must match, but
        for seeds added to a finished run (``seeds`` extending its seed list): only the
        new seeds are computed, and the results are those of a run with every seed.
        Otherwise a finished run with the same settings, seeds and lpg code is returned
        as it is, and one with others is replaced only with ``overwrite`` (see
        :func:`lpg.results.plan_run`). ``say`` gets a line for each such decision."""
        t0 = time.perf_counter()
        seeds = seed_list(seeds)
        out = Path(out_dir)
        want = {"experiment": self.name, "seeds": int(seeds.size), **config}
        with RunLock(out, (record or {}).get("command")):
            plan = plan_run(out, want, seeds.tolist(), resume=resume, overwrite=overwrite, record=record, say=say)
            if plan.action == "reuse":
                return read_results(plan.out)[2]
            resumed = plan.action == "resume"
            if say and not resumed:
                say(f"staged in {plan.stage} (its checkpoints), moved into {plan.out} once finished")
            parts, timing, first_run = [], {"compile_s": 0.0, "run_s": 0.0, "parts": {}}, 0
            try:
                for sw in self.sweeps(config):
                    res = sweep_blocks(sw, seeds, plan.blocks, config.get("chunk_size") or None,
                                       plan.stage / "checkpoint" / sw.part, resume=resumed,
                                       desc=f"{self.name}:{sw.part}",
                                       fingerprint={"experiment": self.name, "part": sw.part, "config": config,
                                                    **sw.facts},
                                       vmap_size=sw.vmap_size, sizes=self.sizes(config))
                    parts.append(self.rows(res, sw, first_run))
                    first_run += int(res.seed.shape[0])
                    timing["parts"][sw.part] = {"compile_s": res.compile_s, "run_s": res.run_s}
                    timing["compile_s"] += res.compile_s
                    timing["run_s"] += res.run_s
            except ValueError:  # refused before it computed anything (e.g. too big for memory): leave nothing
                new_chunks = "checkpoint/*/block_*/chunk_*.npz" if len(plan.blocks) > 1 else "checkpoint/*/chunk_*.npz"
                if (plan.action == "fresh" or len(plan.blocks) > 1) and not any(plan.stage.glob(new_chunks)):
                    discard(plan.stage)  # a fresh run's record, or an extension's links to the finished run's chunks
                raise
            table = Table.concat(parts)
            summary = self.summarise(table, {**config, "seeds": int(seeds.size)})
            summary.setdefault("claims", list(self.claims))
            timing["total_s"] = time.perf_counter() - t0
            env = read_json(plan.stage / "env.json") if (plan.stage / "env.json").is_file() else None
            summary["timing"] = total_timing(timing, env)  # an extended run adds the time of the run it extended
            write_results(plan.stage, config=want, table=table, summary=summary, env=env)
            install(plan.stage, plan.out, say)
        return summary

    @staticmethod
    def rows(result, sw: Sweep, first_run: int = 0) -> Table:
        """A sweep's outputs as table rows. An output named ``curves`` is a dict of
        series (``{series: {"step": (P,), column: (P, …)}}``), each giving one row per
        run and log point with a ``series`` column; every other output is a per-run
        value, repeated on each of the run's rows. Rows are grouped by series, then run,
        then log point."""
        R = int(result.seed.shape[0])
        outputs = dict(result.outputs)
        curves = outputs.pop("curves", None) or {"": None}
        ident = {"part": np.full(R, sw.part), "run": first_run + np.arange(R), "seed": result.seed,
                 **{k: np.asarray(v) for k, v in result.settings.items()},
                 **{k: np.full(R, v) for k, v in sw.tags.items()},
                 **{k: np.asarray(v) for k, v in outputs.items()}}
        pieces = []
        for series, cols in curves.items():
            if cols is None:
                pieces.append(Table(ident))
                continue
            P = int(np.asarray(cols["step"]).shape[1])
            rep = {k: np.repeat(v, P, axis=0) for k, v in ident.items()}
            points = {k: np.asarray(v).reshape((R * P,) + np.asarray(v).shape[2:]) for k, v in cols.items()}
            pieces.append(Table({**rep, "series": np.full(R * P, series), **points}))
        return Table.concat(pieces)

    def summarise(self, table: Table, config: dict[str, Any]) -> dict:
        """``summary.json`` from the results table (``config`` includes ``seeds``)."""
        raise NotImplementedError

    def plot(self, out_dir: Path) -> list[Path]:
        """Draw the figures from the results saved in ``out_dir``; return their paths."""
        config, table, summary = read_results(out_dir)
        return self.draw(table, config, summary, Path(out_dir))

    def draw(self, table: Table, config: dict[str, Any], summary: dict, out_dir: Path) -> list[Path]:
        """The figures of saved results (called by :meth:`plot`)."""
        return []

    def text(self, summary: dict) -> str:
        """A short text table of the summary, printed by ``lpg run``."""
        raise NotImplementedError

    @staticmethod
    def timing_line(summary: dict) -> str:
        t = summary.get("timing", {})
        return f"compile {t.get('compile_s', 0.0):.1f}s, run {t.get('run_s', 0.0):.1f}s"
