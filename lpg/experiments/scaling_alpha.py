"""``scaling-alpha``: reward queries vs the base model's likelihood ``α`` (claims C2 and
C3, PAPER.md §4).

Planted task (:func:`lpg.make_planted`, margin exactly ``γ``) and a base model that puts
likelihood exactly ``α`` on ``y*`` for every context
(:func:`lpg.tasks.planted_alpha_base`), for ``α`` from 1e-1 to 1e-6 at fixed ``γ`` and
``ε``. Measured: queries until ``p_w(y*|x) ≥ 1 − ε`` on every context
(:mod:`lpg.hitting`), for

* Algorithm 1 (best-of-m with the outcome reward, ``m = min(⌈1/α⌉, k^N)``): C3,
  ``Q = Õ((1/α + 1/ε)/γ²)``, minimax — slope −1 in ``α`` where ``1/α ≫ 1/ε``;
  the lower bound C6, ``Ω̃(1/(α γ²))``, is drawn without a fitted constant;
* on-policy PG with the 0/1 outcome reward, one sample per iteration (so queries =
  iterations): C2, ``E[p(y*)] ≥ 1 − Õ(1/(π_α α γ² T))`` — iterations ``∝ 1/α``.

The regime is fixed by the settings, not by the data: ``1/α ≥ D/ε`` with dominance
``D = 100`` (``α ≤ 1e-3`` at ``ε = 0.1``). Acceptance: slope in ``[−1.25, −0.75]``.
``k^N = 4^12 ≈ 1.7·10^7 > 1/α`` for every ``α``, so ``m = ⌈1/α⌉`` is never capped.

CPU default (16 seeds): Algorithm 1 at 6 values of ``α``, PG at 5 (PG needs ``~1/α``
sequential iterations: ``α = 1e-5`` is about 6·10^5 steps). GPU:
``--seeds 64 --set pg_alphas=1e-1,1e-2,1e-3,1e-4,1e-5,1e-6 pg_max_steps=20000000``.
"""

from __future__ import annotations

from lpg.experiments import Experiment, register
from lpg.experiments._scaling import FamilyExperiment


@register
class ScalingAlpha(FamilyExperiment, Experiment):
    name = "scaling-alpha"
    description = "C2, C3: queries to likelihood 1-eps vs base likelihood alpha (Alg. 1 and on-policy PG), slope -1"
    swept = "alpha"
    claims = ["C2", "C3"]
    figure_title = "C2, C3: queries ∝ 1/α where 1/α ≫ 1/ε"
    defaults = {
        "k": 4,
        "N": 12,
        "gamma": 0.5,
        "n_contexts": 2,
        "eps": 0.1,
        "orm_alphas": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
        "pg_alphas": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
        "algs": ["orm", "pg"],
        "batch_size": 1,
        "orm_max_steps": 20000,
        "orm_check_every": 10,
        "pg_max_steps": 3000000,
        "pg_check_every": 100,
        "dominance": 100.0,
        "task_seed": 0,
        "n_boot": 2000,
    }
    default_seeds = 16
