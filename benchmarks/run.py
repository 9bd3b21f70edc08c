"""lpg benchmarks: one command, a table on stdout and a JSON file of results.

    python benchmarks/run.py [--quick] [--seeds 1,8,64] [--peer PATH --peer-python PY]

Workloads (PAPER.md §5, Figure 1 size unless stated: d = k = 32, N = 128, Gaussian
mixture contexts with 32 centres, σ = 0.05):

* ``pg_outcome`` / ``pg_process``: one on-policy PG step as in Figure 1 — batch 1024,
  ±1 rewards, sampled path, Adagrad lr 0.1, token-averaged loss; outcome with the
  batch-mean baseline, process without.
* ``supervised``: one supervised step (the base model's pre-training): batch 256.
* ``pg_outcome01_event`` / ``pg_outcome01_sample``: 0/1 outcome reward, no baseline —
  the exact event path of PAPER.md §6 against real sampling (same law).
* ``best_of_m_event`` / ``token_best_of_m_event``: Algorithms 1 and 2 (event path,
  ``m = k^N``) at N = 1024, batch 256.
* ``contexts_and_y_star``: drawing the batch's 1024 fresh contexts and their ``y*``,
  which every PG step does on either path (timed when ``pg_outcome01_sample`` is): the
  sampled step over this bounds what the event path can gain.
* ``fig1_compile`` (and, without ``--quick``, ``fig1_run``): compiling (and running,
  one seed) the whole Figure-1 experiment: 1000 supervised steps, then 4000 PG steps
  with each reward, evaluated every 50 steps.

Each workload runs for 1, 8, 64 seeds (``--seeds``; 1024 is added on a GPU) as one
jitted ``jax.vmap`` over keys of a ``lax.scan`` over steps. Compile time (trace, lower,
compile) is measured apart from run time; run times are medians of several
repetitions after a warm-up. Rates are aggregate over the seeds: ``steps_per_s`` counts
seed-steps, ``runs_per_s`` full runs (``run_steps`` steps) per second.

With ``--peer``, the authors' implementation is timed on the same workloads by
``peer.py`` in its own interpreter (``--peer-python``, an environment with torch),
alternating step for step with ours in the same run, so machine load hits both alike;
``peer_ratio`` is their time per step over ours per seed-step (median of the paired
ratios). Results go to ``benchmarks/results/<machine>-<date>.json`` (``-quick`` added
with ``--quick``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

import lpg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import roofline  # noqa: E402

FIG1 = dict(d=32, k=32, N=128)
FIG1_PG_STEPS, FIG1_SUP_STEPS, FIG1_LOG_EVERY = 4000, 1000, 50


@dataclass
class Workload:
    name: str
    make_alg: Callable[[], Any]
    batch: int
    N: int
    roofline_kind: str
    tokens_kind: str  # what tokens_per_s counts: sampled | simulated | trained | teacher_forced
    run_steps: int
    hyper: dict = field(default_factory=lambda: dict(lr=0.1))
    peer: str | None = None
    group: int = 1


def workloads() -> list[Workload]:
    pg = dict(optimizer="adagrad", loss_norm="token", batch_size=1024)
    big_n = 1024
    return [
        Workload("pg_outcome",
                 lambda: lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), advantage="batch_mean", **pg),
                 1024, 128, "pg_sample", "sampled", FIG1_PG_STEPS, peer="pg_outcome"),
        Workload("pg_process", lambda: lpg.PolicyGradient(lpg.rewards.Process(signed=True), **pg),
                 1024, 128, "pg_sample", "sampled", FIG1_PG_STEPS, peer="pg_process"),
        Workload("supervised", lambda: lpg.SGD(batch_size=256, optimizer="adagrad", loss_norm="token"),
                 256, 128, "supervised", "trained", FIG1_SUP_STEPS, peer="supervised"),
        Workload("pg_outcome01_event", lambda: lpg.PolicyGradient("outcome", event_path=True, **pg),
                 1024, 128, "pg_event", "simulated", FIG1_PG_STEPS),
        Workload("pg_outcome01_sample", lambda: lpg.PolicyGradient("outcome", event_path=False, **pg),
                 1024, 128, "pg_sample", "sampled", FIG1_PG_STEPS),
        Workload("best_of_m_event", lambda: lpg.BestOfM(batch_size=256),
                 256, big_n, "best_of_m_event", "teacher_forced", FIG1_PG_STEPS,
                 hyper=dict(lr=1.0, log_m=big_n * math.log(32))),
        Workload("token_best_of_m_event", lambda: lpg.TokenBestOfM(batch_size=256),
                 256, big_n, "token_best_of_m_event", "teacher_forced", FIG1_PG_STEPS,
                 hyper=dict(lr=1.0, log_m=math.log(32))),
    ]


# ---------------------------------------------------------------------------------
# Problems and timed functions
# ---------------------------------------------------------------------------------


def figure1_problem(N: int, key):
    task = lpg.make_teacher(key, d=FIG1["d"], k=FIG1["k"], N=N, context="mixture", n_centres=32, sigma=0.05)
    return lpg.make_problem(task, key=key, n_test=1024, track_x=task.centres)


def sweep_fn(alg, problem, hyper, steps: int, seeds: int, seed_mode: str = "vmap"):
    """``keys (S, 2) -> (final weights, log total queries)``: ``steps`` steps of ``alg``
    per seed from the uniform policy (timing does not depend on the weights). One seed
    is run as a user would, without ``vmap``; more seeds as one ``vmap`` over keys, or
    (``seed_mode="map"``, what :func:`lpg.sweep.sweep` does with ``vmap_size=1``) one seed
    after the other with ``lax.map`` — on a CPU, where one seed's batch already fills the
    cores, that keeps each seed's tables in cache."""
    w0 = problem.fmap.init_params()

    def one(key):
        state = alg.init(w0, hyper)

        def body(st, k):
            st, m = alg.step(st, k, problem, hyper)
            return st, m.log_queries

        state, lq = jax.lax.scan(body, state, jax.random.split(key, steps))
        return state.w, jax.nn.logsumexp(lq)

    if seed_mode == "single":
        return jax.jit(lambda keys: one(keys[0]))
    if seed_mode == "map":
        return jax.jit(lambda keys: jax.lax.map(one, keys))
    return jax.jit(jax.vmap(one))


def compile_timed(fn, *args):
    """``(compiled, seconds, peak bytes estimate)``: trace + lower + compile."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    seconds = time.perf_counter() - t0
    return compiled, seconds, peak_memory(compiled)


def peak_memory(compiled) -> tuple[int | None, str]:
    """Peak device memory of one call: the device allocator's peak where it reports one
    (GPU), else XLA's buffer assignment (arguments + outputs + temporaries − aliased)."""
    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "allocator peak (process)"
    try:
        ma = compiled.memory_analysis()
        total = ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes - ma.alias_size_in_bytes
        return int(total), "XLA buffer assignment (args + outputs + temps)"
    except Exception:
        return None, "unavailable"


def timed_call(compiled, *args) -> tuple[float, float, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t0, time.process_time() - c0, out


# ---------------------------------------------------------------------------------
# The authors' implementation, in its own interpreter
# ---------------------------------------------------------------------------------


class PeerProcess:
    """``peer.py`` in the peer interpreter. Before a workload is first timed, each torch
    thread count in ``threads`` is tried for one step and the fastest kept (on a shared
    machine torch's own default can be several times slower than one thread), so the
    ratio is against their best configuration here."""

    def __init__(self, python: str, repo: str, threads: list[int]):
        cmd = [python, str(HERE / "peer.py"), "--repo", repo]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()
        self.candidates = threads
        self.threads: dict[str, int] = {}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the peer process exited; run peer.py by hand to see why")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"peer: {reply['error']}")
        return reply

    def time(self, workload: str, steps: int) -> float:
        if workload not in self.threads:
            self._ask(workload, 1, self.candidates[0])  # warm-up
            trial = {t: self._ask(workload, 1, t)["s_per_step"] for t in self.candidates}
            self.threads[workload] = min(trial, key=trial.get)
        return self._ask(workload, steps, self.threads[workload])["s_per_step"]

    def _ask(self, workload: str, steps: int, threads: int) -> dict:
        self.proc.stdin.write(json.dumps({"workload": workload, "steps": steps, "threads": threads}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


# ---------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------


def machine_name() -> str:
    model = roofline.nominal_limits(jax.devices()[0]).get("cpu_model") or platform.processor() or "cpu"
    dev = jax.devices()[0]
    what = model if dev.platform == "cpu" else getattr(dev, "device_kind", dev.platform)
    slug = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
    return f"{dev.platform}-{slug}-{os.cpu_count()}c"


def measure(wl: Workload, seeds: int, *, steps: int, reps: int, budget_s: float, limits: dict,
            peer: PeerProcess | None, peer_steps: int, seed_mode: str = "vmap") -> dict:
    """Compile, warm up, then ``reps`` timed calls (fewer when a call is so slow that
    they would take more than ``budget_s``, but at least 2), alternating with the peer."""
    problem = figure1_problem(wl.N, jax.random.PRNGKey(0))
    alg = wl.make_alg()
    hyper = lpg.hyper(**wl.hyper)
    fn = sweep_fn(alg, problem, hyper, steps, seeds, seed_mode)
    keys = jax.random.split(jax.random.PRNGKey(1), seeds)
    compiled, compile_s, (peak, peak_src) = compile_timed(fn, keys)
    warm, _, _ = timed_call(compiled, keys)
    reps = max(2, min(reps, int(budget_s / max(warm, 1e-9))))
    walls, cpus, peer_t, lq = [], [], [], []
    for r in range(reps):
        keys = jax.random.split(jax.random.PRNGKey(100 + r), seeds)
        wall, cpu, (_, log_q) = timed_call(compiled, keys)
        walls.append(wall)
        cpus.append(cpu)
        lq.append(float(jax.nn.logsumexp(log_q)))
        if peer is not None and wl.peer:
            peer_t.append(peer.time(wl.peer, peer_steps))
    t = statistics.median(walls)
    seed_steps = seeds * steps
    per_step = t / seed_steps
    tokens_per_step = wl.batch * wl.group * wl.N
    log_q_per_s = statistics.median(lq) - math.log(t)  # natural log of queries per second
    cost = roofline.step_cost(wl.roofline_kind, roofline.Shape(wl.batch, wl.N, FIG1["k"], FIG1["d"], wl.group))
    limit_s = roofline.limit_seconds(cost, limits["measured"])
    dev = jax.devices()[0]
    out = {
        "name": wl.name,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "seeds": seeds,
        "seed_mode": seed_mode,
        "shape": {"batch": wl.batch, "N": wl.N, "k": FIG1["k"], "d": FIG1["d"], "group": wl.group},
        "steps_per_call": steps,
        "reps": reps,
        "s_per_call": t,
        "cpu_s_per_call": statistics.median(cpus),
        "s_per_step": per_step,
        "steps_per_s": seed_steps / t,
        "tokens_per_s": tokens_per_step * seed_steps / t,
        "tokens_kind": wl.tokens_kind,
        "queries_per_s": math.exp(log_q_per_s) if log_q_per_s < 700 else None,
        "log10_queries_per_s": log_q_per_s / math.log(10) if math.isfinite(log_q_per_s) else None,
        "run_steps": wl.run_steps,
        "runs_per_s": seed_steps / t / wl.run_steps,
        "compile_s": compile_s,
        "peak_mem_bytes": peak,
        "peak_mem_source": peak_src,
        "flops_per_step": cost["flops_per_step"],
        "bytes_per_step": cost["bytes_per_step"],
        "roofline_s_per_step": limit_s,
        "roofline_fraction": (limit_s / per_step) if limit_s else None,
        "peer_s_per_step": None,
        "peer_ratio": None,
    }
    if peer_t:
        # Their code runs one seed at a time: S seeds cost S of their steps.
        paired = [p / (w / seed_steps) for p, w in zip(peer_t, walls)]
        out["peer_s_per_step"] = statistics.median(peer_t)
        out["peer_ratio"] = statistics.median(paired)
        out["peer_ratio_of_medians"] = out["peer_s_per_step"] / per_step
        out["peer_threads"] = peer.threads[wl.peer]
    return out


def shared_floor(steps: int, reps: int) -> dict:
    """What every PG step at the Figure-1 size does before it draws or simulates a
    response: fresh contexts for the batch of 1024 and their ``y*``. The event path
    cannot beat the sampled path by more than the sampled step over this."""
    problem = figure1_problem(128, jax.random.PRNGKey(0))

    def one(key):
        def body(acc, k):
            xs, ys = problem.contexts(k, 1024)
            return acc + jnp.sum(xs) + jnp.sum(ys), None

        return jax.lax.scan(body, jnp.float32(0), jax.random.split(key, steps))[0]

    key = jax.random.PRNGKey(1)
    compiled, compile_s, _ = compile_timed(jax.jit(one), key)
    timed_call(compiled, key)
    walls = [timed_call(compiled, jax.random.PRNGKey(100 + r))[0] for r in range(reps)]
    dev = jax.devices()[0]
    return {"name": "contexts_and_y_star", "backend": jax.default_backend(), "device": getattr(dev, "device_kind", str(dev)),
            "seeds": 1, "steps_per_call": steps, "reps": reps, "s_per_step": statistics.median(walls) / steps,
            "steps_per_s": steps / statistics.median(walls), "tokens_per_s": None, "queries_per_s": None,
            "compile_s": compile_s, "peak_mem_bytes": None, "peer_s_per_step": None, "peer_ratio": None}


def figure1_program():
    """One seed of the whole Figure-1 experiment as one function of a key, as the
    ``figure1`` experiment runs it: draw the teacher, pre-train the base model (1000
    supervised steps), then 4000 PG steps with each reward, evaluated every 50 steps.
    Everything derives from the key, so nothing is folded into the compiled program."""
    pg = dict(optimizer="adagrad", loss_norm="token", batch_size=1024)
    algs = (lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), advantage="batch_mean", **pg),
            lpg.PolicyGradient(lpg.rewards.Process(signed=True), **pg))
    h = lpg.hyper(lr=0.1)

    def run(key):
        k_task, k_test, k_pre, *k_pg = jax.random.split(key, 5)
        task = lpg.make_teacher(k_task, **FIG1, context="mixture", n_centres=32, sigma=0.05)
        make = lambda base: lpg.make_problem(task, key=k_test, n_test=1024, track_x=task.centres, base=base)  # noqa: E731
        base = lpg.pretrain(make(None), k_pre, steps=FIG1_SUP_STEPS, batch_size=256, optimizer="adagrad", lr=0.1,
                            loss_norm="token")
        problem = make(base)
        return [lpg.train(a, problem, h, k, steps=FIG1_PG_STEPS, log_every=FIG1_LOG_EVERY).curves.test_error
                for a, k in zip(algs, k_pg)]

    return jax.jit(run)


def figure1_experiment(*, run: bool) -> list[dict]:
    """Compile (and optionally run, one seed) the whole Figure-1 experiment."""
    key = jax.random.PRNGKey(0)
    c0 = time.process_time()
    compiled, compile_s, (peak, peak_src) = compile_timed(figure1_program(), key)
    compile_cpu_s = time.process_time() - c0
    dev = jax.devices()[0]
    base = {"backend": jax.default_backend(), "device": getattr(dev, "device_kind", str(dev)), "seeds": 1,
            "tokens_per_s": None, "queries_per_s": None, "steps_per_s": None, "compile_s": compile_s,
            "compile_cpu_s": compile_cpu_s, "peak_mem_bytes": peak, "peak_mem_source": peak_src,
            "peer_s_per_step": None, "peer_ratio": None}
    results = [{**base, "name": "fig1_compile"}]
    if run:
        wall, cpu, _ = timed_call(compiled, key)
        steps = FIG1_SUP_STEPS + 2 * FIG1_PG_STEPS
        results.append({**base, "name": "fig1_run", "run_s": wall, "cpu_s_per_call": cpu, "steps_per_s": steps / wall,
                        "runs_per_s": 1.0 / wall, "run_steps": steps,
                        "tokens_per_s": 2 * FIG1_PG_STEPS * 1024 * FIG1["N"] / wall, "tokens_kind": "sampled"})
    return results


# ---------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------


def fmt(v, spec=".3g"):
    return "-" if v is None else format(v, spec)


def print_row(r: dict) -> None:
    cpu = r.get("cpu_s_per_call")
    cpu_step = cpu / (r["seeds"] * r["steps_per_call"]) if cpu and r.get("steps_per_call") else None
    print(
        f"{r['name'] + (' [map]' if r.get('seed_mode') == 'map' else ''):<28} {r['seeds']:>5} "
        f"{fmt(r.get('s_per_step'), '.3g'):>9} {fmt(cpu_step, '.3g'):>9} "
        f"{fmt(r.get('steps_per_s')):>9} "
        f"{fmt(r.get('tokens_per_s')):>9} {fmt(r.get('log10_queries_per_s'), '.1f'):>7} "
        f"{fmt(r.get('runs_per_s')):>9} {fmt(r.get('compile_s'), '.1f'):>7} "
        f"{fmt((r.get('peak_mem_bytes') or 0) / 2**20 if r.get('peak_mem_bytes') else None, '.0f'):>7} "
        f"{fmt(r.get('roofline_fraction'), '.1%'):>7} {fmt(r.get('peer_s_per_step'), '.3g'):>8} "
        f"{fmt(r.get('peer_ratio'), '.1f'):>6}",
        flush=True,
    )


HEADER = (
    f"{'workload':<28} {'seeds':>5} {'s/step':>9} {'cpu s/st':>9} {'steps/s':>9} {'tokens/s':>9} {'lg q/s':>7} "
    f"{'runs/s':>9} {'compile':>7} {'MiB':>7} {'roof':>7} {'peer s':>8} {'ratio':>6}"
)


def parse_seeds(text: str, what: str = "--seeds") -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"{what} must be comma-separated positive integers, got {text!r}") from None
    if not seeds or min(seeds) < 1:
        raise SystemExit(f"{what} must be comma-separated positive integers, got {text!r}")
    return seeds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer seeds, steps and repetitions (about 5 minutes on 2 cores)")
    ap.add_argument("--seeds", help="comma-separated seed counts (default 1,8,64; --quick: 1,16; a GPU adds 1024)")
    ap.add_argument("--reps", type=int, help="timed repetitions after the warm-up (default 5; --quick: 3; fewer, "
                    "at least 2, where they would take over 20 s, --quick 6 s)")
    ap.add_argument("--steps", type=int, help="steps per timed call (default 6, --quick 3; divided by seeds/8 for "
                    "larger sweeps, at least 2)")
    ap.add_argument("--only", help="comma-separated workload names to run")
    ap.add_argument("--seed-modes", default="vmap,map",
                    help="comma-separated: several seeds as one vmap, and/or one after the other with lax.map "
                         "(lpg.sweep's vmap_size=1); default both, timed in the same run")
    ap.add_argument("--peer", help="checkout of the authors' repository (mousavih/rlvr-base-model-barrier)")
    ap.add_argument("--peer-python", default=os.environ.get("LPG_PEER_PYTHON", "python3"),
                    help="interpreter with the authors' requirements (torch); default $LPG_PEER_PYTHON or python3")
    ap.add_argument("--peer-threads", help="comma-separated torch thread counts to try for the peer, fastest kept "
                    "(default: 1 and the number of cores)")
    ap.add_argument("--peer-steps", type=int, default=3, help="their steps per timed repetition")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for the JSON file")
    args = ap.parse_args(argv)

    quick = args.quick
    seeds = parse_seeds(args.seeds) if args.seeds else ([1, 16] if quick else [1, 8, 64])
    if jax.default_backend() == "gpu" and not args.seeds:
        seeds.append(1024)
    seed_modes = [m.strip() for m in args.seed_modes.split(",") if m.strip()]
    if not seed_modes or set(seed_modes) - {"vmap", "map"}:
        raise SystemExit(f"--seed-modes must list vmap and/or map, got {args.seed_modes!r}")
    reps = args.reps or (3 if quick else 5)
    steps = args.steps or (3 if quick else 6)
    chosen = workloads()
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        known = {w.name for w in chosen} | {"fig1_compile", "fig1_run"}
        if names - known:
            raise SystemExit(f"--only must name workloads among {sorted(known)}, got {sorted(names - known)}")
        chosen = [w for w in chosen if w.name in names]
    else:
        names = None

    dev = jax.devices()[0]
    print(f"lpg benchmarks: jax {jax.__version__}, backend {jax.default_backend()}, device {dev}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)
    limits = roofline.device_limits(dev)
    m = limits["measured"]
    print(f"limits (measured): {m['peak_flops'] / 1e9:.1f} GFLOP/s, {m['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s; "
          f"nominal peak: {fmt((limits['nominal']['peak_flops'] or 0) / 1e9, '.1f')} GFLOP/s "
          f"({limits['nominal']['how']})", flush=True)
    peer = None
    if args.peer:
        threads = parse_seeds(args.peer_threads, "--peer-threads") if args.peer_threads else sorted({1, os.cpu_count() or 1})
        peer = PeerProcess(args.peer_python, args.peer, threads)
        print(f"peer: {args.peer} (torch {peer.info.get('torch')}; trying {threads} threads), alternating with ours",
              flush=True)
    print(HEADER, flush=True)
    rows = []
    load_before = os.getloadavg()
    try:
        for wl in chosen:
            for s in seeds:
                # Large sweeps take fewer steps per call (at least 2) to keep the run short.
                n_steps = steps if args.steps else max(2, steps // max(1, s // 8))
                for mode in seed_modes if s > 1 else ["single"]:
                    r = measure(wl, s, steps=n_steps, reps=reps, budget_s=6.0 if quick else 20.0, limits=limits,
                                peer=peer, peer_steps=args.peer_steps, seed_mode=mode)
                    rows.append(r)
                    print_row(r)
        if names is None or names & {"fig1_compile", "fig1_run"}:
            for r in figure1_experiment(run=not quick and (names is None or "fig1_run" in names)):
                rows.append(r)
                print_row(r)
    finally:
        if peer is not None:
            peer.close()

    by = {(r["name"], r["seeds"], r.get("seed_mode")): r for r in rows}
    for s in seeds:
        for mode in seed_modes if s > 1 else ["single"]:
            ev, sa = by.get(("pg_outcome01_event", s, mode)), by.get(("pg_outcome01_sample", s, mode))
            if ev and sa:
                print(f"event path / sampled path (0/1 outcome, N=128, {s} seeds, {mode}): "
                      f"{sa['s_per_step'] / ev['s_per_step']:.1f}x")
    sa = by.get(("pg_outcome01_sample", 1, "single"))
    if sa:
        floor = shared_floor(steps, reps)
        rows.append(floor)
        print(f"contexts + y* alone (batch 1024, both paths): {floor['s_per_step'] * 1e3:.2f} ms per step, so the "
              f"event path is at most {sa['s_per_step'] / floor['s_per_step']:.1f}x the sampled path here")
    date = datetime.date.today().isoformat()
    result = {
        "machine": machine_name(),
        "date": date,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "jax_version": jax.__version__,
        "cores": os.cpu_count(),
        "mode": "quick" if quick else "full",
        "seed_modes": seed_modes,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "limits": limits,
        "peer": None if peer is None else {"repo": "mousavih/rlvr-base-model-barrier", "torch": peer.info.get("torch"),
                                           "threads_chosen": peer.threads},
        "workloads": rows,
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['machine']}-{date}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
