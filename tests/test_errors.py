"""Invalid settings raise ``ValueError`` naming the parameter and the offending value,
before anything is compiled."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_raise_before_compiling

import lpg
from lpg import metrics, tasks

KEY = jax.random.PRNGKey(0)


def _teacher(**kw):
    return lambda: lpg.make_teacher(KEY, **{"d": 3, "k": 3, "N": 2, **kw})


def _planted(**kw):
    return lambda: lpg.make_planted(KEY, **{"k": 3, "N": 2, "gamma": 0.5, **kw})


_V = jnp.log(jnp.asarray([0.1, 0.5, 0.2]))
_PT = lpg.make_planted(KEY, k=3, N=2, gamma=0.5)
_TEACHER = lpg.make_teacher(KEY, d=3, k=3, N=2)
_XS = jnp.ones((2, 3))
_YS = jnp.zeros((2, 2), jnp.int32)


def _alpha_base(alpha):
    return lambda: tasks.alpha_base(_TEACHER.feature_map(), _TEACHER.teacher_weights(), _XS, _YS, alpha)


# (call, parameter name, text of the offending value as it appears in the message)
CASES = {
    # k < 2, N < 1, d < 1
    "bigram k": (lambda: lpg.Bigram(3, 1), "k", "1"),
    "bigram d": (lambda: lpg.Bigram(0, 3), "d", "0"),
    "teacher k": (_teacher(k=1), "k", "1"),
    "teacher N": (_teacher(N=0), "N", "0"),
    "teacher d": (_teacher(d=0), "d", "0"),
    "teacher d float": (_teacher(d=2.5), "d", "2.5"),
    "planted k": (_planted(k=1), "k", "1"),
    "planted N": (_planted(N=0), "N", "0"),
    "teacher_response N": (lambda: lpg.teacher_response(_TEACHER.A, _TEACHER.B, jnp.ones(3), 0), "N", "0"),
    "from_bigram k": (lambda: lpg.LinearAR.from_bigram(np.zeros((3, 1)), np.zeros((1, 1))), "k", "1"),
    "sample N": (lambda: lpg.LinearAR(lpg.Bigram(3, 3)).sample(jnp.ones(3), 0, key=KEY), "N", "0"),
    # γ ∉ (0, 1]
    "gamma 0": (lambda: lpg.PlantedShift(3, 0.0), "gamma", "0.0"),
    "gamma > 1": (lambda: lpg.PlantedShift(3, 1.5), "gamma", "1.5"),
    "gamma < 0": (_planted(gamma=-0.2), "gamma", "-0.2"),
    "gamma nan": (lambda: lpg.PlantedShift(3, float("nan")), "gamma", "nan"),
    "n_contexts too many": (lambda: lpg.PlantedShift(3, 0.5, 7), "n_contexts", "7"),
    "n_contexts 0": (lambda: lpg.PlantedShift(3, 0.5, 0), "n_contexts", "0"),
    # ε ∉ (0, 1)
    "eps 0": (lambda: metrics.likelihood_quantile(_V, 0.0), "eps", "0.0"),
    "eps 1": (lambda: metrics.likelihood_quantile(_V, 1.0), "eps", "1.0"),
    "eps > 1": (lambda: metrics.likelihood_quantile(_V, 1.5), "eps", "1.5"),
    "token eps": (lambda: metrics.token_likelihood_quantile(_V[None], -0.1), "eps", "-0.1"),
    # α ∉ (0, 1)
    "alpha_base 0": (_alpha_base(0.0), "alpha", "0.0"),
    "alpha_base 1": (_alpha_base(1.0), "alpha", "1.0"),
    "alpha_base > 1": (_alpha_base(2.0), "alpha", "2.0"),
    "planted alpha 0": (lambda: tasks.planted_alpha_base(_PT, 0.0), "alpha", "0"),
    "planted alpha 1": (lambda: tasks.planted_alpha_base(_PT, 1.0), "alpha", "1"),
    "planted alpha > 1": (lambda: tasks.planted_alpha_base(_PT, 3.0), "alpha", "3"),
    # m < 1 and the other traced hyperparameters
    "m 0": (lambda: lpg.hyper(m=0), "m", "0"),
    "m 0.5": (lambda: lpg.hyper(m=0.5), "m", "0.5"),
    "log_m < 0": (lambda: lpg.hyper(log_m=-1.0), "log_m", "-1.0"),
    "lr": (lambda: lpg.hyper(lr=0.0), "lr", "0.0"),
    "zeta": (lambda: lpg.hyper(zeta=0.5), "zeta", "0.5"),
    # batch_size / group_size < 1
    "pg batch": (lambda: lpg.PolicyGradient(batch_size=0), "batch_size", "0"),
    "pg group": (lambda: lpg.PolicyGradient(group_size=0), "group_size", "0"),
    "pg batch float": (lambda: lpg.PolicyGradient(batch_size=2.0), "batch_size", "2.0"),
    "rloo group": (lambda: lpg.PolicyGradient(advantage="rloo", group_size=1), "group_size", "1"),
    "grpo group": (lambda: lpg.PolicyGradient(advantage="grpo"), "group_size", "1"),
    "best-of-m batch": (lambda: lpg.BestOfM(batch_size=0), "batch_size", "0"),
    "token best-of-m batch": (lambda: lpg.TokenBestOfM(batch_size=-3), "batch_size", "-3"),
    "token best-of-m step unit": (lambda: lpg.TokenBestOfM(step_unit="position"), "step_unit", "'position'"),
    "token step needs adaptive": (lambda: lpg.TokenBestOfM(optimizer="adagrad", step_unit="token"), "step_unit",
                                  "'token'"),
    "sgd batch": (lambda: lpg.SGD(batch_size=0), "batch_size", "0"),
    "pretrain steps": (lambda: lpg.pretrain(lpg.make_problem(_TEACHER, key=KEY, n_test=2), KEY, steps=0), "steps", "0"),
    # wrong array shapes
    "W2 shape": (lambda: lpg.LinearAR.from_bigram(np.zeros((3, 3)), np.zeros((3, 4))), "W2", "(3, 4)"),
    "W2 square wrong k": (lambda: lpg.LinearAR.from_bigram(np.zeros((3, 3)), np.zeros((2, 2))), "W2", "(2, 2)"),
    "W1 ndim": (lambda: lpg.LinearAR.from_bigram(np.zeros(3), np.zeros((3, 3))), "W1", "(3,)"),
    "LinearAR w": (
        lambda: lpg.LinearAR(lpg.Bigram(3, 3), lpg.BigramParams(jnp.zeros((3, 3)), jnp.zeros((3, 2)))),
        "w",
        "(3, 2)",
    ),
    "problem base": (
        lambda: lpg.make_problem(_TEACHER, key=KEY, base=lpg.BigramParams(jnp.zeros((2, 3)), jnp.zeros((3, 3)))),
        "w",
        "(2, 3)",
    ),
    "planted shifts": (lambda: _PT.fmap.planted_weights(jnp.zeros(2, jnp.int32)), "shifts", "(2,)"),
    "planted alpha shape": (lambda: tasks.planted_alpha_base(_PT, jnp.full((2,), 0.5)), "alpha", "(2,)"),
    "online contexts": (lambda: lpg.OnlinePG(contexts=jnp.ones(3)), "contexts", "(3,)"),
    "problem length": (lambda: lpg.make_problem(_TEACHER, key=KEY, length=3), "length", "3"),
    "problem length 0": (lambda: lpg.make_problem(_TEACHER, key=KEY, length=0), "length", "0"),
    "problem n_test": (lambda: lpg.make_problem(_TEACHER, key=KEY, n_test=0), "n_test", "0"),
    "fmap k": (lambda: lpg.make_problem(_TEACHER, key=KEY, fmap=lpg.Bigram(3, 4)), "k", "4"),
    # unknown names
    "reward": (lambda: lpg.PolicyGradient(reward="foo"), "reward", "'foo'"),
    "advantage": (lambda: lpg.PolicyGradient(advantage="foo"), "advantage", "'foo'"),
    "optimizer": (lambda: lpg.PolicyGradient(optimizer="foo"), "optimizer", "'foo'"),
    "behaviour": (lambda: lpg.PolicyGradient(behaviour="foo"), "behaviour", "'foo'"),
    "loss_norm": (lambda: lpg.PolicyGradient(loss_norm="foo"), "loss_norm", "'foo'"),
    "event signed": (lambda: lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), event_path=True), "event_path",
                     "signed=True"),
    "event baseline": (lambda: lpg.PolicyGradient(advantage="batch_mean", event_path=True), "event_path",
                       "BatchMean"),
    "event process importance": (
        lambda: lpg.PolicyGradient("process", behaviour="base", importance=True, event_path=True),
        "event_path",
        "importance=True",
    ),
    "best-of-m reward": (lambda: lpg.BestOfM(reward="process"), "reward", "Process"),
    "best-of-m optimizer": (lambda: lpg.TokenBestOfM(optimizer="sgd"), "optimizer", "'sgd'"),
    "online reward": (lambda: lpg.OnlinePG(reward="process"), "reward", "Process"),
    "sgd optimizer": (lambda: lpg.SGD(optimizer="foo"), "optimizer", "'foo'"),
    "sgd loss_norm": (lambda: lpg.SGD(loss_norm="foo"), "loss_norm", "'foo'"),
    "optimizer()": (lambda: lpg.optim.make("foo"), "optimizer", "'foo'"),
    "context": (_teacher(context="gauss"), "context", "'gauss'"),
    "sigma": (_teacher(context="mixture", sigma=-1.0), "sigma", "-1.0"),
    # training loop
    "train steps": (
        lambda: lpg.train(lpg.SGD(), lpg.make_problem(_TEACHER, key=KEY, n_test=2), lpg.hyper(), KEY, steps=0, log_every=1),
        "steps",
        "0",
    ),
    "train log_every": (
        lambda: lpg.train(lpg.SGD(), lpg.make_problem(_TEACHER, key=KEY, n_test=2), lpg.hyper(), KEY, steps=10, log_every=3),
        "log_every",
        "3",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_value_error_names_parameter_and_value(name):
    call, param, value = CASES[name]
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert re.search(rf"(^|\W){re.escape(param)}\W", msg), f"{param!r} not named in: {msg}"
    assert value in msg, f"offending value {value!r} not in: {msg}"
    # and it says what is allowed
    assert re.search(r"must|allowed|at most|at least|one of", msg), msg


def test_errors_raise_before_compiling():
    """No XLA compilation happens on the way to these errors: arguments are built first,
    then every call must raise without a single backend compile (the monitoring hook is
    checked to fire on a real compile first, so this cannot pass vacuously)."""
    problem = lpg.make_problem(_TEACHER, key=KEY, n_test=2)
    fmap, w_star = _TEACHER.feature_map(), _TEACHER.teacher_weights()
    W1, W2 = jnp.zeros((3, 3)), jnp.zeros((3, 4))
    h = lpg.hyper()
    calls = [
        lambda: lpg.Bigram(3, 1),
        lambda: lpg.make_teacher(KEY, d=3, k=1, N=2),
        lambda: lpg.make_planted(KEY, k=3, N=2, gamma=1.5),
        lambda: metrics.likelihood_quantile(_V, 0.0),
        lambda: lpg.hyper(m=0.5),
        lambda: lpg.PolicyGradient(batch_size=0),
        lambda: lpg.PolicyGradient(reward="foo"),
        lambda: lpg.PolicyGradient(lpg.rewards.Outcome(signed=True), event_path=True),
        lambda: lpg.LinearAR.from_bigram(W1, W2),
        lambda: tasks.alpha_base(fmap, w_star, _XS, _YS, 1.0),
        lambda: lpg.train(lpg.SGD(), problem, h, KEY, steps=10, log_every=3),
        lambda: lpg.train(lpg.PolicyGradient(), problem, h, KEY, steps=0, log_every=1),
        lambda: lpg.pretrain(problem, KEY, steps=0),
        lambda: lpg.make_problem(_TEACHER, key=KEY, n_test=0),
        lambda: lpg.make_problem(_TEACHER, key=KEY, length=3),
    ]
    assert_raise_before_compiling({f"call {i}": call for i, call in enumerate(calls)})


def test_valid_edge_values_are_accepted():
    # The boundaries that are allowed: γ = 1, k = 2, N = 1, d = 1, m = 1, ε just inside.
    lpg.PlantedShift(2, 1.0)
    lpg.make_teacher(KEY, d=1, k=2, N=1)
    lpg.hyper(m=1)
    assert math.isinf(float(lpg.hyper().log_m))
    metrics.likelihood_quantile(_V, 1e-6)
    metrics.likelihood_quantile(_V, 1 - 1e-6)
