"""``barrier``: the main job — a scaled-down Figure 1 (PAPER.md §5) that runs in a few
minutes on a laptop CPU and shows the base-model barrier across seeds.

Same set-up as ``figure1`` (teacher with Gaussian-mixture contexts, a pre-trained base
model, then on-policy PG with ±1 rewards: ORM with the batch-mean baseline, PRM
without; off-support centres: base likelihood < 1e-12), scaled down: k = 16 instead of
32, a shorter pre-training (150 steps) that leaves at least two off-support centres per
seed, and 600 PG steps of batch 128. On-policy ORM never samples a correct answer on an
off-support centre, so it cannot learn it (claims C4–C6); the PRM rewards every correct
prefix and lifts those centres by many orders of magnitude (claim C9).
"""

from __future__ import annotations

from lpg.experiments import register
from lpg.experiments._orm_vs_prm import PAPER_DEFAULTS, OrmVsPrm


@register
class Barrier(OrmVsPrm):
    name = "barrier"
    description = "The base-model barrier in minutes: ORM vs PRM on centres the base model misses (small Figure 1)"
    defaults = {
        **PAPER_DEFAULTS,
        "k": 16,
        "n_test": 512,
        "pretrain_steps": 150,
        "pg_steps": 600,
        "pg_batch": 128,
        "log_every": 25,
    }
    default_seeds = 8
