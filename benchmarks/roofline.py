"""Hardware-limit estimates for the benchmark workloads: the floating-point work and the
memory traffic one step cannot avoid, against the device's peak rate and bandwidth.

Device limits (:func:`device_limits`) are obtained two ways and both are reported:

* ``measured``: what this process actually reaches — peak from a large float32 matmul
  (``jnp.dot`` of two 2048×2048 matrices, best of several), bandwidth from a
  STREAM-style triad ``b = b + s·c`` (``b`` donated, so no fresh pages are faulted in)
  over arrays far larger than the last-level cache (bytes read + written per second,
  best of several). On a shared machine these are lower bounds of the hardware's limits.
* ``nominal``: for a CPU, ``cores × clock × f32 FLOP/cycle/core``, the clock from
  ``/proc/cpuinfo`` and FLOP/cycle from the vector extensions it lists (AVX-512: 64,
  AVX2+FMA: 32, AVX: 16, else 8 — two FMA pipes of that width assumed; AMD Zen 4
  (family 25 with AVX-512) executes 512-bit vectors as two 256-bit halves: 32). No
  nominal bandwidth is claimed for a CPU (it depends on the memory channels a virtual
  machine is given). For a GPU, the vendor's dense f32
  (non-tensor-core) peak and HBM bandwidth by device name, where known.

The fraction of the limit reached uses the *measured* limits: ``limit_s = max(flops /
peak, bytes / bandwidth)`` per step, ``fraction = limit_s / measured_s``.

Per-step work (:func:`step_cost`) counts the minimum a perfect implementation of the
same algorithm must do (one multiply-add = 2 FLOP, an ``exp`` = 1 FLOP, comparisons as
FLOP; intermediates assumed to stay in cache; int32 tokens and float32 values), so the
fraction is how close the implementation comes to the hardware's limit for the work
the algorithm cannot avoid. The
sampled workloads are dominated by a sequential token loop (``N`` dependent steps of
``O(k)`` work per context): neither bound is tight for them, and the fraction mostly
measures per-iteration overhead.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

GPU_NOMINAL = {
    # name fragment: (f32 FLOP/s without tensor cores, memory bandwidth B/s)
    "H200": (67e12, 4.8e12),
    "H100": (67e12, 3.35e12),
    "A100": (19.5e12, 2.0e12),
    "L4": (30e12, 0.3e12),
    "V100": (15.7e12, 0.9e12),
}


def _cpu_info() -> dict:
    info = {"model": "unknown", "mhz": None, "flags": set(), "vendor": "", "family": None}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    info["model"] = m.group(1).strip() if m else "unknown"
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)$", text, re.M)
    info["mhz"] = float(m.group(1)) if m else None
    m = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    info["flags"] = set(m.group(1).split()) if m else set()
    m = re.search(r"^vendor_id\s*:\s*(\S+)$", text, re.M)
    info["vendor"] = m.group(1) if m else ""
    m = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.M)
    info["family"] = int(m.group(1)) if m else None
    return info


def _flop_per_cycle(flags: set, vendor: str = "", family: int | None = None) -> tuple[int, str]:
    if "avx512f" in flags and vendor == "AuthenticAMD" and family == 25:
        return 32, "AVX-512 on AMD Zen 4, executed as 2 x 256-bit (2 FMA pipes x 8 f32 lanes x 2)"
    if "avx512f" in flags:
        return 64, "AVX-512 (2 FMA pipes x 16 f32 lanes x 2)"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2+FMA (2 FMA pipes x 8 f32 lanes x 2)"
    if "avx" in flags:
        return 16, "AVX (8 f32 lanes x add+mul)"
    return 8, "SSE (4 f32 lanes x add+mul)"


def nominal_limits(device) -> dict:
    """Nominal peak (and bandwidth where known) of a JAX device; see the module doc."""
    if device.platform == "cpu":
        info = _cpu_info()
        cores = os.cpu_count() or 1
        fpc, why = _flop_per_cycle(info["flags"], info["vendor"], info["family"])
        peak = cores * info["mhz"] * 1e6 * fpc if info["mhz"] else None
        return {
            "peak_flops": peak,
            "bandwidth_bytes_per_s": None,
            "how": f"{cores} cores x {info['mhz']} MHz (/proc/cpuinfo) x {fpc} f32 FLOP/cycle: {why}",
            "cpu_model": info["model"],
        }
    kind = getattr(device, "device_kind", "")
    for name, (peak, bw) in GPU_NOMINAL.items():
        if name.lower() in kind.lower():
            return {"peak_flops": peak, "bandwidth_bytes_per_s": bw, "how": f"vendor figures for {name}"}
    return {"peak_flops": None, "bandwidth_bytes_per_s": None, "how": f"no nominal figures for {kind!r}"}


def measured_limits(device=None, *, reps: int = 5, n_matmul: int = 2048, triad_mib: int = 256) -> dict:
    """Peak float32 FLOP/s and memory bandwidth this process reaches on ``device``."""
    import jax
    import jax.numpy as jnp

    device = device or jax.devices()[0]
    a = jax.device_put(jnp.ones((n_matmul, n_matmul), jnp.float32), device)
    mm = jax.jit(lambda a: a @ a)
    jax.block_until_ready(mm(a))
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(mm(a))
        best = min(best, time.perf_counter() - t)
    peak = 2.0 * n_matmul**3 / best
    n = triad_mib * 2**20 // 4
    b = jax.device_put(jnp.ones((n,), jnp.float32), device)
    c = jax.device_put(jnp.ones((n,), jnp.float32), device)
    # Donated, so the output reuses b's buffer: no fresh pages to fault in per call.
    triad = jax.jit(lambda b, c: b + 1e-3 * c, donate_argnums=0)
    b = jax.block_until_ready(triad(b, c))
    best_t = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        b = jax.block_until_ready(triad(b, c))
        best_t = min(best_t, time.perf_counter() - t)
    bw = 3 * 4 * n / best_t
    return {
        "peak_flops": peak,
        "bandwidth_bytes_per_s": bw,
        "how": f"best of {reps}: f32 matmul {n_matmul}^3; triad b=b+s*c (donated) over {triad_mib} MiB arrays",
    }


def device_limits(device=None) -> dict:
    import jax

    device = device or jax.devices()[0]
    return {"measured": measured_limits(device), "nominal": nominal_limits(device)}


@dataclass(frozen=True)
class Shape:
    """The sizes that decide a step's cost."""

    batch: int
    N: int
    k: int
    d: int
    group: int = 1


def _table_cost(rows: int, k: int, d: int) -> tuple[float, float]:
    """Per-context ``(k + 1, k)`` table: encode ``x W1`` (2dk), logits, max, exp,
    cumulative sum / normaliser: about 5 FLOP per entry."""
    return 2.0 * d * k + 5.0 * rows * k, 0.0


def step_cost(kind: str, s: Shape) -> dict:
    """Minimum FLOP and bytes of one step of a workload ``kind`` (see the module doc)."""
    B, N, k, d, G = s.batch, s.N, s.k, s.d, s.group
    R = B * G  # responses per step
    tokens = R * N
    table_f, _ = _table_cost(k + 1, k, d)
    teacher_f = B * (2.0 * d * k + 2.0 * (k + 1) * k)  # argmax table for y*
    teacher_b = B * (4 * d + 4 * N)  # read x, write y*
    grad_f = R * (table_f + 2 * (k + 1) * k * 2 + 2 * d * k) + tokens * 3.0  # softmax table, einsums, histograms
    grad_b = tokens * (4 + 4) + R * 4 * d  # read tokens and coefficients, contexts
    if kind == "pg_sample":
        # draw: table + k comparisons per token; rewards: one comparison per token
        f = teacher_f + R * table_f + tokens * (k + 1) + grad_f
        b = teacher_b + tokens * (4 + 4 + 4 + 4) + grad_b  # uniforms, tokens written, read for rewards, y*
    elif kind == "pg_event":
        # teacher-forced log-probabilities of y* (table + gather) and one Bernoulli per context
        f = teacher_f + B * table_f + 2.0 * B * N + grad_f
        b = teacher_b + B * N * 4 * 2 + grad_b
    elif kind == "supervised":
        f = teacher_f + grad_f
        b = teacher_b + grad_b
    elif kind in ("best_of_m_event", "token_best_of_m_event"):
        # log-probabilities of y* under w and q0, geometric draws, gradient on successes
        f = teacher_f + 2 * B * (table_f + 2.0 * N) + grad_f
        b = teacher_b + B * N * 4 * 3 + grad_b
    else:
        raise ValueError(f"kind must be one of pg_sample, pg_event, supervised, best_of_m_event, token_best_of_m_event, got {kind!r}")
    return {"flops_per_step": float(f), "bytes_per_step": float(b)}


def limit_seconds(cost: dict, limits: dict) -> float | None:
    peak, bw = limits.get("peak_flops"), limits.get("bandwidth_bytes_per_s")
    if not peak or not bw:
        return None
    return max(cost["flops_per_step"] / peak, cost["bytes_per_step"] / bw)


if __name__ == "__main__":
    import json

    print(json.dumps(device_limits(), indent=2))
