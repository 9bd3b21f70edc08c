"""Regression guard: the summaries of ``barrier``, ``figure2`` and ``scaling-n`` equal the
ones pinned in ``tests/fixtures/regression/`` (the code before the redesign into
strategy objects and experiment specs computed them), up to float32 rounding.

``barrier`` runs at its defaults (a minute), ``scaling-n`` at a small size (``SMALL``);
``figure2`` at its defaults, ``scaling-n`` at its defaults (about 7 minutes on 2 CPU cores)
and at its ``quick`` profile only with ``LPG_SLOW=1`` (the suite's 10-minute budget). What is compared: every number, list and
flag of the summary; not the timing (machine-dependent) and not keys the fixture does
not have. The default ``barrier`` run also carries the main job's per-centre acceptance
test (and, with ``LPG_SLOW=1``, the same test on seeds the defaults were not tuned on)."""

import json
import math
import os
from pathlib import Path

import pytest

from lpg.experiments import get

FIXTURES = Path(__file__).parent / "fixtures" / "regression"
RTOL = 1e-5
SMALL = (4, {"ks": "4", "Ns": "1,4,16", "eps": "0.1", "max_steps": "2000", "n_boot": "200", "prm_step_units": "token",
             "prm_extra_Ns": ""})
"""``scaling-n`` in CI: 4 seeds, k = 4, N = 1, 4, 16, Algorithm 2 under its per-token reading
(fixture ``scaling-n-small.json``)."""
SLOW = pytest.mark.skipif(os.environ.get("LPG_SLOW") != "1", reason="slow: set LPG_SLOW=1")
CASES = [("barrier", "default"), pytest.param("figure2", "default", marks=SLOW), ("scaling-n", "small"),
         pytest.param("scaling-n", "quick", marks=SLOW), pytest.param("scaling-n", "default", marks=SLOW)]


def differences(old, new, path="") -> list[str]:
    """Where ``new`` departs from ``old`` (floats within ``RTOL``, everything else equal)."""
    if isinstance(old, dict):
        return [d for k in old if k != "timing" for d in
                (differences(old[k], new[k], f"{path}/{k}") if k in new else [f"{path}/{k}: missing"])]
    if isinstance(old, list):
        if not isinstance(new, list) or len(old) != len(new):
            return [f"{path}: {old!r} vs {new!r}"]
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in differences(a, b, f"{path}[{i}]")]
    if isinstance(old, float) and isinstance(new, (int, float)) and not isinstance(new, bool):
        same = old == new or (math.isnan(old) and math.isnan(new)) or math.isclose(old, new, rel_tol=RTOL, abs_tol=0)
        return [] if same else [f"{path}: {old!r} vs {new!r}"]
    return [] if old == new else [f"{path}: {old!r} vs {new!r}"]


_RUNS: dict = {}


def summary_of_run(name: str, profile: str, tmp_path_factory) -> dict:
    """The summary ``name`` writes at ``profile`` (run once per session)."""
    if (name, profile) not in _RUNS:
        exp, out = get(name), tmp_path_factory.mktemp(f"{name}-{profile}")
        if profile == "small":
            seeds, config = SMALL[0], exp.resolve(SMALL[1])
        else:
            seeds, config = exp.profile(profile).seeds, exp.resolve(profile=profile)
        summary = exp.run(config, seeds=seeds, out_dir=out)
        assert summary["timing"]["total_s"] > 0
        _RUNS[(name, profile)] = json.loads((out / "summary.json").read_text())  # as written: strict JSON
    return _RUNS[(name, profile)]


@pytest.mark.parametrize("name,profile", CASES)
def test_summary_matches_the_pinned_one(name, profile, tmp_path_factory):
    pinned = json.loads((FIXTURES / f"{name}-{profile}.json").read_text())
    diffs = differences(pinned, summary_of_run(name, profile, tmp_path_factory))
    assert not diffs, f"{len(diffs)} numbers moved:\n" + "\n".join(diffs[:20])


def acceptance_failures(summary: dict) -> list[str]:
    """What the main job's acceptance (``lpg/experiments/barrier.py``'s docstring, written
    before the data) finds wrong with a ``barrier`` summary: on the well-posed off-support
    centres pooled over the seeds (at least 10 of them), PRM lifts at least 90% above 1e-3
    and ORM leaves their median below 1e-6, in at most 4 minutes on 2 CPU cores."""
    acc, bad = summary["per_centre"]["acceptance"], []
    if acc["n"] < 10:
        bad.append(f"only {acc['n']} well-posed off-support centres")
    if not (acc["prm_above_1e-3"] is not None and acc["prm_above_1e-3"] >= 0.9):
        bad.append(f"PRM lifts {acc['prm_above_1e-3']} of them above 1e-3")
    if not (acc["orm_median"] is not None and acc["orm_median"] < -6.0):
        bad.append(f"ORM's median is 10^{acc['orm_median']}")
    if summary["timing"]["total_s"] > 240:
        bad.append(f"the run took {summary['timing']['total_s']:.0f} s")
    return bad


def test_acceptance_of_the_main_job(tmp_path_factory):
    """``lpg run barrier`` at its defaults (seeds 0..7, the seeds its defaults were tuned
    on) meets the per-centre acceptance. The old across-seed flags (``barrier`` in the
    summary) are reported, not asserted."""
    summary = summary_of_run("barrier", "default", tmp_path_factory)
    assert not acceptance_failures(summary), acceptance_failures(summary)
    assert summary["per_centre"]["acceptance"]["met"]


@SLOW
@pytest.mark.parametrize("first", [5000, 6000])
def test_acceptance_of_the_main_job_on_unseen_seeds(first, tmp_path):
    """The same acceptance on 8 seeds from ``first``, which no choice of the defaults saw
    (judged once when the 0/1 rewards were chosen: PRM lifted 18/20 on 5000..5007 and
    12/13 on 6000..6007, ORM none; the bar is met with no margin, see barrier's docstring)."""
    exp = get("barrier")
    exp.run(exp.resolve({}), seeds=list(range(first, first + 8)), out_dir=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert not acceptance_failures(summary), acceptance_failures(summary)


def test_the_acceptance_can_fail():
    good = {"per_centre": {"acceptance": {"n": 10, "prm_above_1e-3": 0.9, "orm_median": -6.5}},
            "timing": {"total_s": 200.0}}
    assert acceptance_failures(good) == []
    for key, value, what in (("n", 9, "only 9"), ("prm_above_1e-3", 0.89, "PRM lifts 0.89"),
                             ("prm_above_1e-3", None, "PRM lifts None"), ("orm_median", -6.0, "ORM's median")):
        bad = {**good, "per_centre": {"acceptance": {**good["per_centre"]["acceptance"], key: value}}}
        assert [b for b in acceptance_failures(bad) if b.startswith(what)], (key, value)
    assert acceptance_failures({**good, "timing": {"total_s": 241.0}}) == ["the run took 241 s"]


def test_the_comparison_can_fail():
    moved = {"a": [1.0, 2.0 * (1 + 1e-4)], "b": "x"}
    assert differences({"a": [1.0, 2.0], "b": "x"}, moved) == ["/a[1]: 2.0 vs 2.0002"]
    assert differences({"a": 1}, {}) == ["/a: missing"]
    assert differences({"t": {"timing": 1.0}, "timing": 3}, {"t": {}}) == []
