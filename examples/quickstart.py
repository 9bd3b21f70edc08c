"""Quickstart: build a task, pre-train a base model, post-train it with outcome (ORM)
and process (PRM) rewards, and sweep seeds — the API of lpg in a dozen lines.

    python examples/quickstart.py           # about a minute on a laptop CPU
    python examples/quickstart.py --tiny    # a few seconds (also: LPG_TINY=1)
"""

import math
import os
import sys

import jax

import lpg
from lpg.sweep import sweep

tiny = "--tiny" in sys.argv or os.environ.get("LPG_TINY") == "1"
N, k, steps = (16, 4, 20) if tiny else (128, 16, 300)

# A teacher with Gaussian-mixture contexts; its mixture centres are the tracked set.
task = lpg.make_teacher(jax.random.PRNGKey(0), d=32, k=k, N=N, context="mixture", n_centres=32)
problem = lpg.make_problem(task, key=jax.random.PRNGKey(1), n_test=256, track_x=task.centres)
base = lpg.pretrain(problem, jax.random.PRNGKey(2), steps=150)  # supervised base model q0 (Adagrad)
problem = lpg.make_problem(task, key=jax.random.PRNGKey(1), n_test=256, track_x=task.centres, base=base)

# On-policy policy gradient with ±1 rewards, as in the paper's Figure 1: the reward, the
# advantage and the behaviour policy are objects (lpg.rewards, lpg.advantages, lpg.behaviours).
orm = lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), advantage=lpg.advantages.BatchMean(), batch_size=128,
                         optimizer="adagrad")
prm = lpg.PolicyGradient(lpg.rewards.Process(signed=True), batch_size=128, optimizer="adagrad")
for name, alg in [("ORM", orm), ("PRM", prm)]:
    run = lambda key: lpg.train(alg, problem, lpg.hyper(lr=0.1), key, steps=steps, log_every=steps // 2).curves
    curves = sweep(run, {}, seeds=4).outputs  # 4 seeds in one compiled, vmapped call
    hardest = curves.track_log_lik[:, -1].min(axis=-1) / math.log(10)  # likelihoods are natural logs
    queries = curves.log_queries[:, -1] / math.log(10)
    print(f"{name}: test error {curves.test_error[:, -1].round(3)}, "
          f"log10 likelihood of the hardest centre {hardest.round(1)}, log10 reward queries {queries.round(1)}")
