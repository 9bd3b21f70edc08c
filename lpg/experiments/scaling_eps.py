"""``scaling-eps``: reward queries vs the target ``ε`` (claims C3 and C2, PAPER.md §4).

Planted task and a base with likelihood exactly ``α`` on ``y*`` for every context, as in
``scaling-alpha``, now with ``α`` fixed and large (0.5) and ``ε`` from 1e-1 to 1e-4.
Measured: queries until ``p_w(y*|x) ≥ 1 − ε`` on every context, for Algorithm 1
(C3: ``Õ((1/α + 1/ε)/γ²)`` — slope −1 in ``ε`` where ``1/ε ≫ 1/α``) and on-policy PG with
the 0/1 outcome reward (C2: ``Õ(1/(α γ² ε))`` iterations at fixed ``α``, also slope −1).

The regime is fixed by the settings: ``1/ε ≥ D/α`` with ``D = 100`` (``ε ≤ 5·10⁻³`` at
``α = 0.5``). Acceptance: slope in ``[−1.25, −0.75]``. ``ε`` stops at 1e-4: the target
``log p ≥ log(1 − ε)`` is checked in float32, whose rounding of a 12-token
log-likelihood (``~10⁻⁶``) stays well below ``ε`` there.

CPU default: 7 values of ``ε`` (two per decade) × 2 algorithms × 16 seeds. GPU:
``--seeds 64``.
"""

from __future__ import annotations

from lpg.experiments import Experiment, register
from lpg.experiments._scaling import FamilyExperiment

EPS_GRID = [1e-1, 3.16e-2, 1e-2, 3.16e-3, 1e-3, 3.16e-4, 1e-4]


@register
class ScalingEps(FamilyExperiment, Experiment):
    name = "scaling-eps"
    description = "C3: queries to likelihood 1-eps vs eps from a good base (Alg. 1 and on-policy PG), slope -1"
    swept = "eps"
    claims = ["C2", "C3"]
    figure_title = "C3: queries ∝ 1/ε where 1/ε ≫ 1/α"
    defaults = {
        "k": 4,
        "N": 12,
        "gamma": 0.5,
        "n_contexts": 2,
        "alpha": 0.5,
        "orm_epss": list(EPS_GRID),
        "pg_epss": list(EPS_GRID),
        "algs": ["orm", "pg"],
        "batch_size": 1,
        "orm_max_steps": 2000000,
        "orm_check_every": 100,
        "pg_max_steps": 2000000,
        "pg_check_every": 100,
        "dominance": 100.0,
        "task_seed": 0,
        "n_boot": 2000,
    }
    default_seeds = 16
