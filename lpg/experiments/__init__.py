"""The registered experiments: an explicit registry of declarative specs
(:class:`lpg.spec.Experiment`), one module per family of experiments. A module that
fails to import is an error, not a hidden experiment."""

from __future__ import annotations

from lpg.experiments import (
    barrier,
    baselines,
    figure2,
    lq_estimate,
    lq_governs,
    mc_prm,
    noisy_verifiers,
    online,
    practice,
    pretrain_barrier,
    scaling_family,
    scaling_gamma,
    scaling_n,
    several_correct,
    sgd_lr,
)
from lpg.spec import Experiment

REGISTRY: dict[str, Experiment] = {
    exp.name: exp
    for exp in (
        barrier.Figure1(), barrier.Barrier(), figure2.Figure2(), sgd_lr.SgdLr(), scaling_family.ScalingAlpha(),
        scaling_family.ScalingEps(), scaling_gamma.ScalingGamma(), lq_governs.LqGoverns(), scaling_n.ScalingN(),
        online.Online(), pretrain_barrier.PretrainBarrier(), baselines.Baselines(),
        # beyond the paper: its open questions Q1-Q5
        noisy_verifiers.NoisyVerifiers(), mc_prm.McPrm(), several_correct.SeveralCorrect(), lq_estimate.LqEstimate(),
        practice.Practice(),
    )
}
"""Every experiment by name, in the order of the paper's claims, then of its open questions."""


def get(name: str) -> Experiment:
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def available() -> dict[str, Experiment]:
    return dict(REGISTRY)
