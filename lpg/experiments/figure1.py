"""``figure1``: the paper's Figure 1 at its own settings (PAPER.md §5) — outcome vs
process rewards from the same pre-trained base model, N = 128, d = k = 32, mixture
contexts (M = 32, σ = 0.05); base: Adagrad lr 0.1, batch 256, 1000 steps; then
on-policy PG, Adagrad lr 0.1, batch 1024, 4000 steps, ±1 rewards (ORM with the
batch-mean baseline, PRM without); test set 1024; the off-support centres have base
likelihood < 1e-12. The base-model barrier: claims C4–C6 (ORM) against C9 (PRM).
"""

from __future__ import annotations

from lpg.experiments import register
from lpg.experiments._orm_vs_prm import PAPER_DEFAULTS, OrmVsPrm


@register
class Figure1(OrmVsPrm):
    name = "figure1"
    description = "Paper Figure 1: ORM vs PRM post-training beyond the base model's support (N=128, k=32; minutes on CPU)"
    defaults = dict(PAPER_DEFAULTS)
    default_seeds = 2
