"""Figure 1 per centre, beside the authors' PyTorch implementation
(``mousavih/rlvr-base-model-barrier``) run on the same teacher from the same base weights.

lpg's side is a finished ``lpg run figure1`` (its ``results.npz`` holds every centre's
final log-likelihood and the test errors). For each chosen seed this script

1. ``export`` (lpg's interpreter): rebuilds the seed's teacher ``A, B``, test set and
   pre-trained base ``q0`` with :func:`lpg.experiments.barrier.seed_setup` (the code the run
   itself used), checks the base's per-centre log-likelihood against the one the run
   recorded, and writes them to an ``.npz``;
2. ``peer`` (the authors' interpreter; this part imports nothing from lpg or JAX): runs
   their ``outcome_reward_pg`` (batch-mean baseline) and ``process_reward_pg`` (no
   baseline) as they are, on-policy, Adagrad, at the run's settings, from that base,
   with their ``GroundTruth(w1_star=A, w2_star=B)`` and their mixture generator, and
   evaluates on lpg's test set and the mixture centres. Their model's flat weight vector
   is ``W1`` (``d × k``) then ``W2ᵀ``: lpg's logits are ``x·W1[:, y] + W2[prev, y]``,
   theirs ``x·w1[:, y] + w2[y, prev]``. Before training it checks, independently of lpg,
   that their ``generate_y`` gives lpg's ``y*`` on the centres and the test set and that
   their model gives lpg's base log-likelihoods; final log-likelihoods are computed in
   float64 from their model's logits (their own ``compute_sequence_likelihood`` is a
   float32 ``exp`` that is 0 below ~1e-45);
3. ``table`` (lpg's interpreter): prints, per seed and per off-support centre, the base
   log10 likelihood, lpg's and their final ORM and PRM log10 likelihoods and the test
   errors as markdown, with the agreement per centre (lifted above 1e-3 or not), and
   writes the numbers to a JSON.

``run`` does all three (the peer in its own interpreter, ``--peer-python``)::

    lpg run figure1 --seeds 4 --out runs/figure1
    python benchmarks/figure1_peer.py run --run runs/figure1 --seeds 0 \\
        --peer PATH_OF_THEIR_CHECKOUT --peer-python THEIR_PYTHON --threads 1

The two implementations share the teacher, the base weights, the test set and every
setting, not the random streams (contexts, sampled responses): on centres where
on-policy PRM is bistable (``barrier``'s *ambiguous* centres) the two can end apart
without either being wrong. Their package's ``__init__`` only loads their config
reader (omegaconf), so ``utils`` is imported as a bare package of its modules.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ALGS = ("orm", "prm")
AUTHORS = {"signed": True, "optimizer": "adagrad", "loss_norm": "token", "orm_baseline": "batch_mean",
           "prm_baseline": "none"}
"""The settings their training functions hard-wire (±1 rewards, Adagrad, the mean over batch and
positions; the batch-mean baseline for ORM — their ``outcome_reward.yaml`` reads
``baseline: fasle``, a true string — and none for PRM)."""
LIFT = 1e-3
LN10 = math.log(10.0)


# ------------------------------------------------------------------ lpg's side


def export(run_dir, seed: int, to) -> dict:
    """Write seed ``seed`` of the ``figure1`` run in ``run_dir`` to ``to`` (``.npz``): the
    teacher, the base weights, the test set, the centres and the run's settings; returns
    the largest gap between the rebuilt base's per-centre log-likelihoods and the run's."""
    import jax

    import lpg
    from lpg.experiments import barrier
    from lpg.results import read_results
    from lpg.sweep import run_key

    config, table, _ = read_results(run_dir)
    if config.get("experiment") not in ("figure1", "barrier"):
        raise ValueError(f"run must be a figure1 or barrier run, got experiment={config.get('experiment')!r}")
    for k, v in AUTHORS.items():
        if config[k] != v:
            raise ValueError(f"{k} must be {v!r} (the authors' training functions hard-wire it), got {config[k]!r}")
    seeds = [int(s) for s in table.where(series="orm").per_run("seed")]
    if seed not in seeds:
        raise ValueError(f"seed must be one of the run's seeds {seeds}, got {seed}")
    task, problem, _ = barrier.seed_setup(config, run_key(seed))
    ev = lpg.evaluate(problem, problem.base)
    recorded = barrier.base_log_lik(table)[seeds.index(seed)]
    gap = float(np.max(np.abs(np.asarray(ev.track_log_lik, np.float64) - recorded)))
    if not gap <= 1e-4 * max(1.0, float(np.max(np.abs(recorded)))):
        raise ValueError(f"the rebuilt base model's centre log-likelihoods differ from the run's by {gap:.3g} "
                         f"(run recorded by another lpg version?)")
    arrays = dict(A=task.A, B=task.B, W1=problem.base.W1, W2=problem.base.W2, test_x=problem.test_x,
                  test_y=problem.test_y, track_x=problem.track_x, track_y=problem.track_y,
                  base_log_lik=ev.track_log_lik)
    settings = {k: config[k] for k in ("d", "k", "N", "n_centres", "sigma", "pg_steps", "pg_batch", "pg_lr",
                                       "log_every", "n_wellposed", "off_support_threshold")}
    Path(to).parent.mkdir(parents=True, exist_ok=True)
    np.savez(to, seed=seed, settings=json.dumps(settings), **{k: np.asarray(jax.device_get(v)) for k, v in
                                                            arrays.items()})
    return {"seed": seed, "base_log_lik_gap": gap}


# ------------------------------------------------------------------ their side (no lpg, no JAX)


def load_peer(repo: str):
    """``(torch, data_generator, training, model)`` of their checkout, ``utils`` as a bare
    package (its ``__init__`` imports only their config reader)."""
    import torch

    pkg = types.ModuleType("utils")
    pkg.__path__ = [str(Path(repo) / "utils")]
    sys.modules["utils"] = pkg
    from utils import data_generator, model, training

    return torch, data_generator, training, model


def peer(repo: str, data, out, *, algs=ALGS, device: str = "cpu", threads: int | None = None,
         steps: int | None = None, torch_seed: int | None = None) -> dict:
    """Run their ORM and PRM from the exported base (``data``, an ``.npz`` of
    :func:`export`) and write per-centre final log-likelihoods and test errors to ``out``.
    ``torch_seed`` (default: the lpg seed) seeds their random streams."""
    torch, gen, training, model_mod = load_peer(repo)
    if threads:
        torch.set_num_threads(threads)
    z = np.load(data)
    cfg, seed = json.loads(str(z["settings"])), int(z["seed"])
    dev = torch.device(device)
    t = lambda a, dtype=torch.float32: torch.as_tensor(np.asarray(a), dtype=dtype, device=dev)  # noqa: E731
    d, k, N = cfg["d"], cfg["k"], cfg["N"]
    gt = gen.GroundTruth(w1_star=t(z["A"]), w2_star=t(z["B"]))
    test_x, track_x = t(z["test_x"]), t(z["track_x"])
    test_y, track_y = t(z["test_y"], torch.long), t(z["track_y"], torch.long)
    for name, x, y in (("centres", track_x, track_y), ("test set", test_x, test_y)):
        if not torch.equal(gen.generate_y(x, gt.w1_star, gt.w2_star, N), y):
            raise RuntimeError(f"their generate_y differs from lpg's y* on the {name}: the teacher does not map")
    base = model_mod.AutoregressivePolicy(d=d, k=k, device=dev)
    with torch.no_grad():
        base.w.copy_(torch.cat([t(z["W1"]).reshape(-1), t(z["W2"]).T.reshape(-1)]))

    def log_lik(m, x, y):  # float64 natural log p(y|x) per row
        with torch.no_grad():
            lp = m.logits(x, y).double().log_softmax(-1)
            return lp.gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(1).cpu().numpy()

    gap = float(np.max(np.abs(log_lik(base, track_x, track_y) - z["base_log_lik"])))
    if gap > 1e-3 * max(1.0, float(np.max(np.abs(z["base_log_lik"])))):
        raise RuntimeError(f"their model's base log-likelihoods differ from lpg's by {gap:.3g}: the weights do not map")
    mixture = gen.MixtureInputGenerator(num_mix=cfg["n_centres"], sigma=cfg["sigma"])
    fns = {"orm": (training.outcome_reward_pg, True), "prm": (training.process_reward_pg, False)}
    steps = int(steps or cfg["pg_steps"])
    torch_seed = seed if torch_seed is None else int(torch_seed)
    res = {"seed": seed, "torch_seed": torch_seed, "torch": torch.__version__, "device": device,
           "threads": torch.get_num_threads(), "steps": steps, "batch": cfg["pg_batch"], "lr": cfg["pg_lr"],
           "base_log_lik_gap": gap,
           "log_every": cfg["log_every"]}
    for alg in algs:
        fn, baseline = fns[alg]
        torch.manual_seed(torch_seed)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # their progress lines
            m, errs, hist = fn(d=d, k=k, seq_length=N, gt=gt, device=dev, test_x=test_x, test_y=test_y, steps=steps,
                               batch_size=cfg["pg_batch"], test_every=cfg["log_every"],
                               optimizer_partial=lambda p: torch.optim.Adagrad(p, lr=cfg["pg_lr"]),
                               track_samples=(track_x, track_y), track_every=cfg["log_every"], init_model=base,
                               baseline=baseline, data_generator=mixture)
        res[alg] = {"seconds": time.perf_counter() - t0, "final_log_lik": log_lik(m, track_x, track_y).tolist(),
                    "test_error": [float(e) for e in errs],
                    # their float32 likelihoods at the log points (0 below ~1e-45), (P, M)
                    "track_lik": torch.stack(hist).cpu().double().numpy().tolist()}
        print(json.dumps({"seed": seed, "alg": alg, "seconds": round(res[alg]["seconds"], 1),
                          "final_test_error": res[alg]["test_error"][-1]}), flush=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res))
    return res


# ------------------------------------------------------------------ the table (lpg's side)


def _l10(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.1f}"


def compare(run_dir, peer_files) -> dict:
    """Per seed and per centre: lpg's and their final log10 likelihoods and test errors."""
    from lpg.experiments import barrier
    from lpg.results import read_results

    config, table, _ = read_results(run_dir)
    seeds = [int(s) for s in table.where(series="orm").per_run("seed")]
    base = barrier.base_log_lik(table) / LN10
    share = table.where(series="orm").per_run("wellposed_count") / config["n_wellposed"]
    final = {a: table.where(series=a, step=-1)["track_log_lik"].astype(np.float64) / LN10 for a in ALGS}
    err = {a: table.where(series=a, step=-1)["test_error"].astype(np.float64) for a in ALGS}
    base_err = table.where(series="orm").per_run("base_test_error").astype(np.float64)
    thr = math.log10(config["off_support_threshold"])
    env = json.loads((Path(run_dir) / "env.json").read_text())
    out = {"lpg": {k: env.get(k) for k in ("lpg", "lpg_code", "jax", "backend", "device_kind")},
           "config": {k: v for k, v in config.items() if k != "seeds"}, "seeds": {}}
    by_seed = {}  # a seed's algorithms may come from several files (one process each)
    for f in peer_files:
        p = json.loads(Path(f).read_text())
        by_seed.setdefault(p["seed"], {}).update(p)
    for seed, p in sorted(by_seed.items()):
        if seed not in seeds:
            raise ValueError(f"peer results must be of the run's seeds {seeds}, got seed {seed}")
        i = seeds.index(seed)
        centres = []
        for j in range(base.shape[1]):
            c = {"centre": j, "share": float(share[i, j]), "base": float(base[i, j]),
                 "off_support": bool(base[i, j] < thr)}
            for a in ALGS:
                c[f"lpg_{a}"] = float(final[a][i, j])
                if a in p:
                    c[f"peer_{a}"] = p[a]["final_log_lik"][j] / LN10
            centres.append(c)
        errors = {"base": float(base_err[i]), **{f"lpg_{a}": float(err[a][i]) for a in ALGS},
                  **{f"peer_{a}": p[a]["test_error"][-1] for a in ALGS if a in p}}
        out["seeds"][str(seed)] = {
            "centres": centres, "test_error": errors,
            "peer": {k: p[k] for k in ("torch", "device", "threads", "steps", "batch", "base_log_lik_gap")},
            "peer_seconds": {a: p[a]["seconds"] for a in ALGS if a in p}}
    return out


def markdown(cmp: dict) -> str:
    """The per-centre table (off-support centres) and the test errors, as markdown."""
    wellposed = cmp["config"]["wellposed"]
    lines = ["| seed | centre | share of y* | base | ORM lpg | ORM theirs | PRM lpg | PRM theirs |",
             "|---|---|---|---|---|---|---|---|"]
    agree = {a: {"well-posed": [0, 0], "ambiguous": [0, 0]} for a in ALGS}
    on = {f"{a} {w}": [] for a in ALGS for w in ("lpg", "peer")}
    for s, rec in cmp["seeds"].items():
        for c in rec["centres"]:
            if not c["off_support"]:
                for key in on:
                    a, w = key.split()
                    on[key] += [c[f"{w}_{a}"]] if f"{w}_{a}" in c else []
                continue
            group = "well-posed" if c["share"] >= wellposed else "ambiguous"
            lines.append(f"| {s} | {c['centre']} | {100 * c['share']:.0f}% ({group}) | {_l10(c['base'])} | "
                         + " | ".join(_l10(c.get(f"{w}_{a}")) for a in ALGS for w in ("lpg", "peer")) + " |")
            for a in ALGS:
                if f"peer_{a}" in c:
                    agree[a][group][0] += (c[f"lpg_{a}"] > math.log10(LIFT)) == (c[f"peer_{a}"] > math.log10(LIFT))
                    agree[a][group][1] += 1
    lines += ["", "| seed | base | ORM lpg | ORM theirs | PRM lpg | PRM theirs |", "|---|---|---|---|---|---|"]
    for s, rec in cmp["seeds"].items():
        e = rec["test_error"]
        lines.append(f"| {s} | {e['base']:.4f} | " + " | ".join(
            "n/a" if f"{w}_{a}" not in e else f"{e[f'{w}_{a}']:.4f}" for a in ALGS for w in ("lpg", "peer")) + " |")
    lines += ["", "Same side of 1e-3 (lpg and theirs), off-support centres: " + "; ".join(
        f"{a.upper()} {g} {n}/{m}" for a in ALGS for g, (n, m) in agree[a].items() if m)]
    lines.append("On-support centres (base >= the threshold): final log10 likelihood, lowest and how many below "
                 "1e-3: " + "; ".join(f"{k.split()[0].upper()} {'theirs' if k.endswith('peer') else 'lpg'} "
                                      f"{_l10(min(v))}, {sum(x <= math.log10(LIFT) for x in v)}/{len(v)}"
                                      for k, v in on.items() if v))
    return "\n".join(lines)


# ------------------------------------------------------------------ command line


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="lpg: write a seed's teacher and base weights")
    e.add_argument("--run", required=True, help="a finished `lpg run figure1` directory")
    e.add_argument("--seed", type=int, required=True)
    e.add_argument("--to", required=True, help=".npz to write")
    p = sub.add_parser("peer", help="theirs: ORM and PRM from an exported base (imports no lpg)")
    p.add_argument("--repo", required=True, help="path of a checkout of the authors' repository")
    p.add_argument("--data", required=True, help="an .npz written by export")
    p.add_argument("--to", required=True, help=".json to write")
    p.add_argument("--algs", default="orm,prm")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--steps", type=int, default=None, help="PG steps (default: the run's pg_steps)")
    p.add_argument("--torch-seed", type=int, default=None, help="seed of their random streams (default: the seed)")
    t = sub.add_parser("table", help="lpg: the per-centre markdown table")
    t.add_argument("--run", required=True)
    t.add_argument("--peer-results", nargs="+", required=True, help=".json files written by peer")
    t.add_argument("--json", default=None, help="also write the numbers here")
    r = sub.add_parser("run", help="export, peer (in --peer-python) and table for the given seeds")
    r.add_argument("--run", required=True)
    r.add_argument("--seeds", default="0", help="comma-separated seeds of the run")
    r.add_argument("--peer", required=True, help="path of a checkout of the authors' repository")
    r.add_argument("--peer-python", required=True, help="an interpreter with torch")
    r.add_argument("--work", default="figure1_peer", help="folder for the exports and their results")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--device", default="cpu")
    r.add_argument("--steps", type=int, default=None, help="their PG steps (default: the run's; fewer: a smoke test)")
    r.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.cmd == "export":
        print(json.dumps(export(args.run, args.seed, args.to)))
    elif args.cmd == "peer":
        algs = tuple(a for a in args.algs.split(",") if a)
        bad = [a for a in algs if a not in ALGS]
        if bad or not algs:
            raise SystemExit(f"--algs must be a comma-separated subset of {','.join(ALGS)}, got {args.algs!r}")
        peer(args.repo, args.data, args.to, algs=algs, device=args.device, threads=args.threads, steps=args.steps,
             torch_seed=args.torch_seed)
    elif args.cmd == "table":
        cmp = compare(args.run, args.peer_results)
        if args.json:
            Path(args.json).write_text(json.dumps(cmp, indent=1))
        print(markdown(cmp))
    else:
        work = Path(args.work)
        files = []
        for s in (int(v) for v in args.seeds.split(",")):
            print(json.dumps(export(args.run, s, work / f"seed{s}.npz")), flush=True)
            cmd = [args.peer_python, __file__, "peer", "--repo", args.peer, "--data", str(work / f"seed{s}.npz"),
                   "--to", str(work / f"peer_seed{s}.json"), "--device", args.device]
            for flag, v in (("--threads", args.threads), ("--steps", args.steps)):
                cmd += [flag, str(v)] if v else []
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": ""})
            files.append(work / f"peer_seed{s}.json")
        cmp = compare(args.run, files)
        if args.json:
            Path(args.json).write_text(json.dumps(cmp, indent=1))
        print(markdown(cmp))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, RuntimeError, FileNotFoundError) as e:  # one line, not a traceback
        raise SystemExit(f"figure1_peer: {e}") from None
