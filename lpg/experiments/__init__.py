"""The registered experiments: an explicit registry of declarative specs
(:class:`lpg.spec.Experiment`), one module per family of experiments. A module that
fails to import is an error, not a hidden experiment."""

from __future__ import annotations

from lpg.experiments import (
    barrier,
    baselines,
    figure2,
    lq_governs,
    online,
    pretrain_barrier,
    scaling_family,
    scaling_gamma,
    scaling_n,
    sgd_lr,
)
from lpg.spec import Experiment

REGISTRY: dict[str, Experiment] = {
    exp.name: exp
    for exp in (
        barrier.Figure1(), barrier.Barrier(), figure2.Figure2(), sgd_lr.SgdLr(), scaling_family.ScalingAlpha(),
        scaling_family.ScalingEps(), scaling_gamma.ScalingGamma(), lq_governs.LqGoverns(), scaling_n.ScalingN(),
        online.Online(), pretrain_barrier.PretrainBarrier(), baselines.Baselines(),
    )
}
"""Every experiment by name, in the order of the paper's claims."""


def get(name: str) -> Experiment:
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def available() -> dict[str, Experiment]:
    return dict(REGISTRY)
