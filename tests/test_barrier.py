"""The ``barrier`` experiment (and the summary it shares with ``figure1``): the
log-space mean likelihood against float64 references, the summary of synthetic runs
with hand-computed answers and the validation of its settings. The acceptance run at the
defaults is in ``test_regression.py``, where the default run is pinned."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lpg.analysis import log_mean_lik
from lpg.experiments import get
from lpg.experiments.barrier import summary_of, text
from lpg.spec import Experiment, Sweep
from lpg.sweep import SweepResult

LN10 = math.log(10.0)


def test_log_mean_lik_matches_float64_and_is_shift_invariant(rng):
    ll = rng.uniform(-60, 0, size=(3, 5, 7))  # (seeds, log points, centres)
    mask = rng.random((3, 7)) < 0.5
    mask[:, 0] = True
    got = log_mean_lik(ll, mask)
    for s in range(3):
        for t in range(5):
            ref = math.log(np.mean(np.exp(ll[s, t][mask[s]])))
            assert got[s, t] == pytest.approx(ref, rel=1e-12, abs=1e-12)
    # Far below float64's range (1e-4000): the same answer shifted, no underflow.
    np.testing.assert_allclose(log_mean_lik(ll - 10_000.0, mask), got - 10_000.0, rtol=1e-12)


def test_log_mean_lik_of_an_empty_set_is_nan():
    out = log_mean_lik(np.zeros((2, 3)), np.array([[True, False, False], [False, False, False]]))
    assert out[0] == pytest.approx(0.0) and math.isnan(out[1])


def synthetic(orm_final, prm_final):
    """Two seeds, four centres; centres 0 and 1 are off-support (base < 1e-12). The rows
    a sweep of two runs with these outputs gives (:meth:`lpg.spec.Experiment.rows`)."""
    base = np.log(np.array([[1e-20, 1e-14, 0.5, 0.9], [1e-30, 1e-13, 1e-3, 0.8]]))
    curve = lambda final: np.stack([base, np.log(np.asarray(final))], axis=1)  # noqa: E731
    step = np.array([[0, 10], [0, 10]])
    outputs = {
        "base_track_log_lik": base,
        "base_test_error": np.array([0.5, 0.6]),
        "curves": {
            "orm": {"step": step, "track_log_lik": curve(orm_final), "test_error": np.array([[0.5, 0.3], [0.6, 0.4]]),
                    "log_queries": np.log(np.array([[1.0, 160.0], [1.0, 160.0]]))},
            "prm": {"step": step, "track_log_lik": curve(prm_final), "test_error": np.array([[0.5, 0.1], [0.6, 0.2]]),
                    "log_queries": np.log(np.array([[1.0, 2000.0], [1.0, 4000.0]]))},
        },
    }
    return Experiment.rows(SweepResult({}, np.array([0, 1]), outputs, 0.0, 0.0), Sweep("runs", None))


def test_summary_of_synthetic_runs_matches_hand_computation():
    orm = [[1e-25, 1e-5, 0.6, 0.9], [1e-40, 1e-20, 0.1, 0.9]]  # seed 0: ORM mean 5e-6 > 1e-6
    prm = [[1e-3, 1e-5, 0.7, 0.9], [1e-9, 1e-11, 0.2, 0.9]]
    s = summary_of(synthetic(orm, prm), {"off_support_threshold": 1e-12})
    base = [math.log10((1e-20 + 1e-14) / 2), math.log10((1e-30 + 1e-13) / 2)]
    orm10 = [math.log10((1e-25 + 1e-5) / 2), math.log10((1e-40 + 1e-20) / 2)]
    prm10 = [math.log10((1e-3 + 1e-5) / 2), math.log10((1e-9 + 1e-11) / 2)]
    assert s["off_support"]["base"]["mean"] == pytest.approx(np.mean(base), rel=1e-9)
    assert s["off_support"]["orm"]["mean"] == pytest.approx(np.mean(orm10), rel=1e-9)
    assert s["off_support"]["prm"]["median"] == pytest.approx(np.median(prm10), rel=1e-9)
    assert s["off_support"]["prm_gain"]["mean"] == pytest.approx(np.mean(np.subtract(prm10, base)), rel=1e-9)
    assert s["test_error"]["prm"]["mean"] == pytest.approx(0.15)
    assert s["queries"]["prm"]["mean"] == pytest.approx(np.mean(np.log10([2000.0, 4000.0])))
    assert s["n_off_support"]["per_seed"] == [2, 2] and s["n_off_support"]["min"] == 2
    # Seed 0's ORM mean is 10^-5.3, seed 1's 10^-20.3: the interval [-20.3, -5.3] is not below -6.
    assert s["barrier"] == {"orm_below_1e-6": False, "prm_gain_at_least_100x": True, "orm_below_1e-6_seeds": 1,
                            "prm_gain_at_least_100x_seeds": 2, "seeds": 2}
    out = text(s)
    assert "ORM" in out and "PRM" in out and "ORM < 1e-6: NO (1/2 seeds)" in out


def test_barrier_flags_across_and_per_seed():
    orm = [[1e-25, 1e-19, 0.6, 0.9], [1e-40, 1e-20, 0.1, 0.9]]
    prm = [[1e-3, 1e-5, 0.7, 0.9], [1e-29, 1e-16, 0.2, 0.9]]  # seed 1: PRM only 1.6x base
    s = summary_of(synthetic(orm, prm), {"off_support_threshold": 1e-12})
    assert s["barrier"] == {"orm_below_1e-6": True, "prm_gain_at_least_100x": False, "orm_below_1e-6_seeds": 2,
                            "prm_gain_at_least_100x_seeds": 1, "seeds": 2}
    # A seed without any off-support centre fails on its own.
    s = summary_of(synthetic(orm, prm), {"off_support_threshold": 1e-14})
    assert s["n_off_support"]["per_seed"] == [1, 1]
    s = summary_of(synthetic(orm, prm), {"off_support_threshold": 1e-25})
    assert s["n_off_support"]["per_seed"] == [0, 1] and s["barrier"]["orm_below_1e-6_seeds"] == 1


def test_defaults_are_a_scaled_down_figure1():
    barrier, figure1 = get("barrier"), get("figure1")
    assert barrier.default_seeds >= 4
    assert barrier.defaults.keys() == figure1.defaults.keys()
    same = {"d", "n_centres", "sigma", "optimizer", "loss_norm", "signed", "orm_baseline", "prm_baseline",
            "off_support_threshold", "pretrain_lr", "pg_lr", "N"}
    for key in same:
        assert barrier.defaults[key] == figure1.defaults[key], key
    # Figure 1 of the paper (PAPER.md §5)
    paper = dict(d=32, k=32, N=128, n_centres=32, sigma=0.05, n_test=1024, pretrain_steps=1000, pretrain_batch=256,
                 pretrain_lr=0.1, pg_steps=4000, pg_batch=1024, pg_lr=0.1, signed=True, optimizer="adagrad",
                 orm_baseline="batch_mean", prm_baseline="none", off_support_threshold=1e-12)
    assert {k: figure1.defaults[k] for k in paper} == paper
    barrier.resolve({})
    figure1.resolve({})
