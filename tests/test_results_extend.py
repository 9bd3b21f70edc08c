"""Seeds added to a finished run (``lpg run NAME --out DIR --resume --seeds S``, issue 12):
``plan_run`` stages the finished run with the longer seed list and its checkpoints, and
leaves the finished run as it is until the extended one has finished; a run computed in
blocks of seeds (``lpg.spec.sweep_blocks``) equals one sweep over every seed, bit for
bit and in the same row order (grid-major, seed-minor). The end-to-end check against a
fresh run of the command is in tests/test_cli.py."""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lpg import results, spec
from lpg.sweep import run_axis, sweep
from test_results import fake_run, tree

GRID = {"a": [0.5, 1.0, 2.0]}


def one(key, a):
    """One run: a few numbers of its own key, scaled by the grid setting, and a curve."""
    x = jax.random.normal(key, (3,)) * a
    return {"x": x, "n": jnp.sum(x > 0), "curves": {"": {"step": jnp.arange(2), "v": jnp.stack([x[0], x[1] * a])}}}


def leaves(tree_):
    return jax.tree_util.tree_leaves(tree_)


@pytest.mark.parametrize("chunk", [None, 2, spec.PER_POINT])
def test_blocks_of_seeds_give_the_sweep_over_every_seed(tmp_path, chunk):
    seeds = np.arange(3, 8)  # five seeds, in blocks of 2, 2 and 1
    sw = spec.Sweep("p", one, GRID, chunk_size=None if chunk is None else chunk)
    whole = sweep(one, GRID, seeds=seeds, chunk_size={None: None, 2: 2, spec.PER_POINT: 5}[chunk])
    done = []
    blocks = spec.sweep_blocks(sw, seeds, (2, 4, 5), None, tmp_path, on_chunk=lambda d, t: done.append((d, t)))
    settings, seed = run_axis(GRID, seeds)
    assert blocks.seed.tolist() == seed.tolist() == whole.seed.tolist()
    assert blocks.settings["a"].tolist() == settings["a"].tolist()
    for a, b in zip(leaves(whole.outputs), leaves(blocks.outputs)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    # Row r is run (grid point r // 5, seed r % 5): checked against each run alone.
    alone = jax.jit(one)(jax.random.PRNGKey(6), jnp.float32(2.0))
    np.testing.assert_allclose(blocks.outputs["x"][2 * 5 + 3], alone["x"], rtol=1e-6)
    # Block b checkpoints its own seeds: the first in tmp_path, the others below it.
    assert {"block_1", "block_2", "sweep.json", "chunk_000000.npz"} <= set(os.listdir(tmp_path))
    assert [json.loads((tmp_path / d / "sweep.json").read_text())["seeds"] for d in ("", "block_1", "block_2")] \
        == [[3, 4] * 3, [5, 6] * 3, [7] * 3]  # the seed of each run: three grid points
    assert [t for d, t in done if d == t] == [6, 6, 3]  # each block's runs (3 points x its seeds), computed once
    # Resumed, every block is read from its checkpoints: nothing is computed again.
    done.clear()
    again = spec.sweep_blocks(sw, seeds, (2, 4, 5), None, tmp_path, resume=True, on_chunk=lambda d, t: done.append(d))
    assert done == [] and all(np.array_equal(a, b) for a, b in zip(leaves(again.outputs), leaves(blocks.outputs)))


def test_seed_blocks_and_timing_come_from_the_record():
    assert results.seed_blocks({}, 4) == (4,)
    env = {"run": {"extended": [{"seeds_before": 2}, {"seeds_before": 5}, "junk", {"seeds_before": 9}]}}
    assert results.seed_blocks(env, 8) == (2, 5, 8)  # a count outside (0, 8) is no block
    timing = {"compile_s": 1.0, "run_s": 2.0, "total_s": 4.0, "parts": {"p": {"compile_s": 1.0, "run_s": 2.0}}}
    assert results.total_timing(timing, {}) == timing
    before = {"compile_s": 10.0, "run_s": 20.0, "total_s": 40.0, "parts": {"p": {"compile_s": 10.0, "run_s": 20.0},
                                                                            "q": {"compile_s": 0.5, "run_s": 0.25}}}
    env = {"run": {"extended": [{"timing_before": {"run_s": 99.0}}, {"timing_before": before}]}}
    assert results.total_timing(timing, env) == {
        "compile_s": 11.0, "run_s": 22.0, "total_s": 44.0,
        "parts": {"p": {"compile_s": 11.0, "run_s": 22.0}, "q": {"compile_s": 0.5, "run_s": 0.25}}}


def finished_with_checkpoint(out, seeds=(0, 1), **kw):
    config = fake_run(out, seeds=seeds, **kw)
    (out / "checkpoint" / "p").mkdir(parents=True)
    (out / "checkpoint" / "p" / "chunk_000000.npz").write_bytes(b"chunk")
    summary = {"done": True, "timing": {"compile_s": 3.0, "run_s": 4.0, "total_s": 8.0}}
    results.atomic_write_json(out / "summary.json", summary)
    return config


def test_seeds_are_added_to_a_finished_run_which_stays_until_replaced(tmp_path):
    plan = results.plan_run
    out, stage = tmp_path / "out", results.staging_dir(tmp_path / "out")
    want = finished_with_checkpoint(out)
    before = tree(tmp_path)
    more = {**want, "seeds": 4}
    # Without --resume: refused, and told how to add the seeds.
    with pytest.raises(ValueError, match=r"seeds \(recorded 0..1, now 0..3\).*--resume to add seeds 2..3"):
        plan(out, more, [0, 1, 2, 3])
    # Not an extension of the recorded seeds, or other settings: a conflict, named.
    with pytest.raises(ValueError, match=r"seeds \(recorded 0..1, now 1..3\)"):
        plan(out, {**want, "seeds": 3}, [1, 2, 3], resume=True)
    with pytest.raises(ValueError, match=r"lr \(recorded 0.1, now 0.2\)"):
        plan(out, {**more, "lr": 0.2}, [0, 1, 2, 3], resume=True)
    assert tree(tmp_path) == before
    said = []
    p = plan(out, more, [0, 1, 2, 3], resume=True, record={"command": "lpg add"}, say=said.append)
    assert p.action == "resume" and p.blocks == (2, 4) and "adding seeds 2..3" in said[0]
    assert {k: v for k, v in tree(tmp_path).items() if k.startswith("out/")} == {
        k: v for k, v in before.items() if k.startswith("out/")}  # the finished run is untouched
    assert json.loads((stage / "config.json").read_text()) == more
    assert (stage / "checkpoint" / "p" / "chunk_000000.npz").read_bytes() == b"chunk"
    assert not (stage / "summary.json").exists() and not (stage / "results.npz").exists()
    run = json.loads((stage / "env.json").read_text())["run"]
    ext = run["extended"][0]
    assert run["seeds"] == [0, 1, 2, 3] and ext["seeds_before"] == 2 and ext["seeds_added"] == [2, 3]
    assert ext["command"] == "lpg add" and ext["code"] == results.code_digest() and ext["at"]
    assert ext["timing_before"]["run_s"] == 4.0 and ext["env"]["lpg_code"] == results.code_digest()
    # Interrupted: the staged extension resumes with its blocks; more seeds wait until it has finished.
    with pytest.raises(ValueError, match=r"seeds \(recorded 0..3, now 0..5\).*finished run only"):
        plan(out, {**want, "seeds": 6}, list(range(6)), resume=True)
    assert plan(out, more, [0, 1, 2, 3], resume=True).blocks == (2, 4)
    # A finished extension not yet moved in: moved in, then extended again.
    shutil.copy(out / "results.npz", stage / "results.npz")
    shutil.copy(out / "summary.json", stage / "summary.json")
    p = plan(out, {**want, "seeds": 6}, list(range(6)), resume=True)
    assert p.blocks == (2, 4, 6) and json.loads((out / "config.json").read_text())["seeds"] == 4
    assert [e["seeds_before"] for e in json.loads((stage / "env.json").read_text())["run"]["extended"]] == [2, 4]


@pytest.mark.parametrize("case", ["other code", "no checkpoints", "foreign file"])
def test_seeds_are_not_added_where_the_old_ones_cannot_be_reused(tmp_path, case):
    out = tmp_path / "out"
    want = finished_with_checkpoint(out, code="0123456789abcdef" if case == "other code" else None)
    if case == "no checkpoints":
        shutil.rmtree(out / "checkpoint")
    if case == "foreign file":
        (out / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    named = {"other code": "other lpg code", "no checkpoints": "checkpoints .* are gone",
             "foreign file": "notes.txt"}[case]
    with pytest.raises(ValueError, match=named):
        results.plan_run(out, {**want, "seeds": 3}, [0, 1, 2], resume=True)
    assert tree(tmp_path) == before
