"""Algorithms of PAPER.md §3 as pure ``init``/``step`` pairs (jit- and vmap-able)."""

from lpg.algorithms.best_of_m import BestOfM, TokenBestOfM
from lpg.algorithms.common import (
    OPTIMIZERS,
    Curves,
    Evaluation,
    Hyper,
    Problem,
    StepMetrics,
    TrainResult,
    TrainState,
    adaptive_step,
    evaluate,
    hyper,
    make_problem,
    optimizer,
    train,
)
from lpg.algorithms.online import OnlinePG
from lpg.algorithms.pg import PolicyGradient
from lpg.algorithms.sgd import SGD, pretrain

__all__ = [
    "OPTIMIZERS", "BestOfM", "Curves", "Evaluation", "Hyper", "OnlinePG", "PolicyGradient", "Problem",
    "SGD", "StepMetrics", "TokenBestOfM", "TrainResult", "TrainState", "adaptive_step", "evaluate",
    "hyper", "make_problem", "optimizer", "pretrain", "train",
]
