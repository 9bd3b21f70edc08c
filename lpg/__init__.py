"""lpg: a JAX simulation engine for post-training linear autoregressive softmax policies
with policy gradients — outcome vs process rewards and the base-model barrier
(Mousavi-Hosseini & Erdogdu, arXiv 2603.06957)."""

__version__ = "0.2.0"

from lpg import (  # noqa: E402
    advantages,
    algorithms,
    analysis,
    behaviours,
    features,
    hitting,
    metrics,
    optim,
    policy,
    problem,
    results,
    rewards,
    sweep,
    tasks,
    theory,
)
from lpg.algorithms import (  # noqa: E402
    SGD,
    AbstractAlgorithm,
    BestOfM,
    Hyper,
    OnlinePG,
    PolicyGradient,
    TokenBestOfM,
    hyper,
    pretrain,
    train,
)
from lpg.checked import checked  # noqa: E402
from lpg.features import AbstractFeatureMap, Bigram, BigramParams, PlantedShift  # noqa: E402
from lpg.metrics import likelihood_quantile, token_likelihood_quantile  # noqa: E402
from lpg.optim import adaptive_step  # noqa: E402
from lpg.policy import LinearAR  # noqa: E402
from lpg.problem import Problem, evaluate, make_problem, planted_problem  # noqa: E402
from lpg.sweep import run_key  # noqa: E402
from lpg.tasks import AbstractTask, PlantedTask, Teacher, make_planted, make_teacher, teacher_response  # noqa: E402

__all__ = [
    "SGD", "AbstractAlgorithm", "AbstractFeatureMap", "AbstractTask", "BestOfM", "Bigram", "BigramParams", "Hyper",
    "LinearAR", "OnlinePG", "PlantedShift", "PlantedTask", "PolicyGradient", "Problem", "Teacher", "TokenBestOfM",
    "adaptive_step", "advantages", "algorithms", "analysis", "behaviours", "checked", "evaluate", "features", "hitting",
    "hyper", "likelihood_quantile", "make_planted", "make_problem", "make_teacher", "metrics", "optim",
    "planted_problem", "plotting", "policy", "pretrain", "problem", "results", "rewards", "run_key", "sweep",
    "tasks", "teacher_response", "theory", "token_likelihood_quantile", "train", "__version__",
]


def __getattr__(name):
    # lpg.plotting imports matplotlib: loaded on first use, not with lpg.
    if name == "plotting":
        import importlib

        return importlib.import_module("lpg.plotting")
    raise AttributeError(f"module 'lpg' has no attribute {name!r}")
