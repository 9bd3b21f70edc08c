"""Time the authors' PyTorch implementation (``mousavih/rlvr-base-model-barrier``) at the
Figure-1 size, in its own interpreter, so that torch never becomes a dependency of lpg.

This file imports nothing from lpg or JAX. ``run.py`` starts it with the interpreter
given by ``--peer-python`` (an environment with the authors' requirements: torch,
omegaconf, ...) and the path of a checkout given by ``--peer``, then talks to it over
stdin/stdout, one JSON object per line, so that their steps and ours alternate in one
run on the same machine::

    -> {"workload": "pg_outcome", "steps": 3, "threads": 2}
    <- {"workload": "pg_outcome", "steps": 3, "seconds": 0.61, "s_per_step": 0.203, "threads": 2}

Their training functions are called as they are (``utils.training``), with their own
data generator, optimiser (``torch.optim.Adagrad``, lr 0.1) and behaviour policy, and
with evaluation pushed past the last step (``test_every`` larger than ``steps``), so
the time is that of their training steps: a batch of contexts and ``y*``, an
autoregressive draw of ``batch × N`` tokens (a Python loop over positions), the rewards
and one Adagrad step. Their code is imported from the checkout, never copied.

Workloads (the settings of their ``configs/outcome_reward.yaml`` and
``configs/process_reward.yaml``): ``pg_outcome`` (±1 outcome reward, batch-mean
baseline), ``pg_process`` (±1 process reward, no baseline), both with batch 1024;
``supervised`` (cross-entropy, batch 256). All at ``d = k = 32``, ``N = 128`` with the
Gaussian-mixture contexts (32 centres, σ = 0.05).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time

WORKLOADS = ("pg_outcome", "pg_process", "supervised")


def load(repo: str):
    sys.path.insert(0, repo)
    import torch
    from utils import data_generator, training

    return torch, data_generator, training


class Peer:
    def __init__(self, repo: str, *, d: int = 32, k: int = 32, N: int = 128, seed: int = 0, threads: int | None = None):
        self.torch, self.data, self.training = load(repo)
        torch = self.torch
        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.d, self.k, self.N = d, k, N
        self.device = torch.device("cpu")
        self.gt = self.data.GroundTruth()
        self.gen = self.data.MixtureInputGenerator(num_mix=32, sigma=0.05)
        # A one-row test set: their functions evaluate once before the loop.
        self.test_x = torch.zeros(1, d)
        self.test_y = torch.zeros(1, N, dtype=torch.long)
        self.opt = functools.partial(torch.optim.Adagrad, lr=0.1)

    def time(self, workload: str, steps: int) -> float:
        common = dict(
            d=self.d, k=self.k, seq_length=self.N, gt=self.gt, device=self.device,
            test_x=self.test_x, test_y=self.test_y, steps=steps, optimizer_partial=self.opt,
            test_every=steps + 1, data_generator=self.gen,
        )
        fn, kw = {
            "pg_outcome": (self.training.outcome_reward_pg, dict(batch_size=1024, baseline=True)),
            "pg_process": (self.training.process_reward_pg, dict(batch_size=1024, baseline=False)),
            "supervised": (self.training.supervised_train, dict(batch_size=256)),
        }.get(workload, (None, None))
        if fn is None:
            raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
        # Their progress prints must not mix with the JSON protocol on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            t0 = time.perf_counter()
            fn(**kw, **common)
            return time.perf_counter() - t0


def serve(peer: Peer, inp=sys.stdin, out=sys.stdout) -> None:
    for line in inp:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        try:
            steps = int(req["steps"])
            if req.get("threads"):
                peer.torch.set_num_threads(int(req["threads"]))
            seconds = peer.time(req["workload"], steps)
            reply = {"workload": req["workload"], "steps": steps, "seconds": seconds, "s_per_step": seconds / steps,
                     "threads": peer.torch.get_num_threads()}
        except Exception as e:  # reported to run.py, which prints it
            reply = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True, help="path of a checkout of the authors' repository")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--once", choices=WORKLOADS, help="time one workload, print one JSON line and exit")
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    peer = Peer(args.repo, threads=args.threads)
    sys.stdout.write(json.dumps({"ready": True, "torch": peer.torch.__version__,
                                 "threads": peer.torch.get_num_threads()}) + "\n")
    sys.stdout.flush()
    if args.once:
        peer.time(args.once, 1)  # warm-up
        s = peer.time(args.once, args.steps)
        print(json.dumps({"workload": args.once, "steps": args.steps, "seconds": s, "s_per_step": s / args.steps}))
        return
    serve(peer)


if __name__ == "__main__":
    main()
