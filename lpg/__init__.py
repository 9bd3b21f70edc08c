"""lpg: a JAX simulation engine for post-training linear autoregressive softmax policies
with policy gradients — outcome vs process rewards and the base-model barrier
(Mousavi-Hosseini & Erdogdu, arXiv 2603.06957)."""

from lpg import algorithms, features, metrics, policy, rewards, tasks
from lpg.algorithms import (
    SGD,
    BestOfM,
    Hyper,
    OnlinePG,
    PolicyGradient,
    Problem,
    TokenBestOfM,
    adaptive_step,
    hyper,
    make_problem,
    pretrain,
    train,
)
from lpg.features import Bigram, BigramParams, FeatureMap, PlantedShift
from lpg.metrics import likelihood_quantile, token_likelihood_quantile
from lpg.policy import LinearAR
from lpg.tasks import PlantedTask, Teacher, make_planted, make_teacher, teacher_response

__version__ = "0.1.0"

__all__ = [
    "SGD", "BestOfM", "Bigram", "BigramParams", "FeatureMap", "Hyper", "LinearAR", "OnlinePG",
    "PlantedShift", "PlantedTask", "PolicyGradient", "Problem", "Teacher", "TokenBestOfM",
    "adaptive_step", "algorithms", "features", "hyper", "likelihood_quantile", "make_planted",
    "make_problem", "make_teacher", "metrics", "policy", "pretrain", "rewards", "tasks",
    "teacher_response", "token_likelihood_quantile", "train", "__version__",
]
