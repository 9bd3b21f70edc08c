"""Algorithms of PAPER.md §3 as pure ``init``/``step`` pairs (jit- and vmap-able)."""

from lpg.algorithms.base import AbstractAlgorithm, Hyper, StepMetrics, TrainState, hyper
from lpg.algorithms.best_of_m import BestOfM, TokenBestOfM
from lpg.algorithms.online import OnlinePG
from lpg.algorithms.pg import PolicyGradient
from lpg.algorithms.sgd import SGD, pretrain
from lpg.algorithms.train import Curves, TrainResult, train

__all__ = [
    "AbstractAlgorithm", "BestOfM", "Curves", "Hyper", "OnlinePG", "PolicyGradient", "SGD", "StepMetrics",
    "TokenBestOfM", "TrainResult", "TrainState", "hyper", "pretrain", "train",
]
