"""The query-complexity scaling experiments (scaling-n, -alpha, -eps, -gamma) and the
``lpg report`` command: each runs end to end at a tiny size; the helpers that set ``m``
and the base models are checked against closed forms; bad settings fail before compiling."""

import json
import math
import re

import jax
import numpy as np
import pytest

import lpg
import lpg.results
from lpg import cli, report, spec
from lpg.algorithms.base import READINGS
from lpg.analysis import verdict
from lpg.experiments import available, get, scaling_family, scaling_n
from lpg.problem import base_quantiles, planted_problem
from lpg.results import read_results, to_jsonable
from lpg.spec import Profile
from lpg.theory import log_ceil, orm_log_m, prm_log_m

SLOPE_KEYS = {"estimate", "ci", "theory", "regime"}


def run_tiny(name, tmp_path, seeds, **overrides):
    exp = get(name)
    config = exp.resolve({k: str(v) for k, v in overrides.items()})
    out = tmp_path / name
    summary = exp.run(config, seeds=seeds, out_dir=out)
    figures = exp.plot(out)
    assert any(p.suffix == ".png" and p.is_file() for p in figures)
    assert isinstance(exp.text(summary), str)
    cfg, table, on_disk = read_results(out)
    assert cfg["experiment"] == name and on_disk["slopes"].keys() == summary["slopes"].keys()
    for rec in summary["slopes"].values():
        assert SLOPE_KEYS <= rec.keys()
    return summary, table, cfg


# ---------------------------------------------------------------------------------
# Helpers against closed forms
# ---------------------------------------------------------------------------------


def test_log_ceil_is_exact_on_integers_and_rounds_up():
    for x in (1, 2, 4, 5, 11, 32, 1000, 3 * 10**5):
        assert float(log_ceil(math.log(x))) == pytest.approx(math.log(x), abs=1e-6)
    assert float(log_ceil(math.log(4.5))) == pytest.approx(math.log(5), abs=1e-6)
    assert float(log_ceil(443.6)) == pytest.approx(443.6)


def test_m_of_the_uniform_and_planted_bases():
    k, N, eps = 4, 6, 0.1
    task = lpg.make_planted(jax.random.PRNGKey(0), k=k, N=N, gamma=0.5)
    prob = planted_problem(task, key=jax.random.PRNGKey(1))
    log_q, log_tl = base_quantiles(prob, eps)
    assert float(log_q) == pytest.approx(-N * math.log(k), rel=1e-6)  # Q = k^-N
    assert float(log_tl) == pytest.approx(-math.log(k), rel=1e-6)  # Q^TL = 1/k
    assert float(orm_log_m(log_q, N, k)) == pytest.approx(N * math.log(k), rel=1e-6)  # m = k^N
    assert float(prm_log_m(log_tl, k)) == pytest.approx(math.log(k), rel=1e-6)  # m = k
    # with the walk's log factor: m = k·⌈ln(N/δ)⌉ = 4·⌈ln 60⌉ = 20
    assert float(prm_log_m(log_tl, k, N, 0.1)) == pytest.approx(math.log(20), rel=1e-6)
    alpha = 1e-3
    w0 = lpg.tasks.planted_alpha_base(task, alpha)
    prob = planted_problem(task, key=jax.random.PRNGKey(1), base=w0)
    log_q, _ = base_quantiles(prob, eps)
    assert float(log_q) == pytest.approx(math.log(alpha), rel=1e-4)
    assert math.exp(float(orm_log_m(log_q, N, k))) == pytest.approx(1000.0, rel=1e-4)  # m = ceil(1/alpha)
    # a length below task.N: k^length caps m
    short = planted_problem(task, key=jax.random.PRNGKey(1), length=2)
    log_q, _ = base_quantiles(short, eps)
    assert float(orm_log_m(log_q, 2, k)) == pytest.approx(2 * math.log(k), rel=1e-6)


def test_pretrained_base_has_the_same_token_likelihood_at_every_position():
    config = get("scaling-n").resolve({"pretrain_steps": "5"})
    w = scaling_n.pretrained_base(config, 4)
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=4, N=9, gamma=config["gamma"])
    tl = lpg.metrics.token_log_likelihoods(task.fmap, w, task.contexts, jax.vmap(task.response)(task.contexts))
    tl = np.asarray(tl)
    np.testing.assert_allclose(tl, np.repeat(tl[:, :1], 9, axis=1), rtol=1e-5, atol=1e-6)
    assert np.all(tl[:, 0] > math.log(1 / 4))  # pre-training helped every context


def test_algorithm_2_runs_the_extra_N_where_c9s_regime_is_short():
    """C9's regime N·min(1/Q^TL, k) ≥ 1/ε with the uniform base's Q^TL = 1/k: at k = 4 and
    ε = 0.1 it is N ≥ 2.5, so N = 1..5 hold 3 of it (extras added) and 1, 3..6 hold 4."""
    config = get("scaling-n").resolve({"bases": "uniform", "eps": "0.1", "Ns": "1,2,3,4,5", "prm_extra_Ns": "7,6"})
    task = lpg.make_planted(jax.random.PRNGKey(config["task_seed"]), k=4, N=8, gamma=config["gamma"])
    w = planted_problem(task, key=jax.random.PRNGKey(0)).base_weights()  # the uniform base (only its shape is used)
    assert scaling_n.c9_m0(config, 4, w) == pytest.approx(4.0)
    assert scaling_n.prm_Ns(config, 4, w) == [1, 2, 3, 4, 5, 6, 7]
    assert scaling_n.prm_Ns({**config, "Ns": [1, 3, 4, 5, 6]}, 4, w) == [1, 3, 4, 5, 6]
    assert scaling_n.prm_Ns({**config, "prm_extra_Ns": []}, 4, w) == [1, 2, 3, 4, 5]
    assert scaling_n.prm_Ns({**config, "eps": 0.2}, 4, w) == [1, 2, 3, 4, 5]  # N ≥ 1.25: four of them


def test_pad_of_buckets():
    assert [scaling_n.pad_of(n) for n in (1, 8, 9, 32, 33, 128, 129)] == [8, 8, 32, 32, 128, 128, 512]


# ---------------------------------------------------------------------------------
# Validation before compiling
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,key,value", [
    ("scaling-n", "Ns", "4,2"), ("scaling-n", "check_every", "7"), ("scaling-n", "algs", "orm,sgd"),
    ("scaling-n", "gamma", "1.5"), ("scaling-alpha", "orm_alphas", "0.1,2.0"), ("scaling-alpha", "n_contexts", "99"),
    ("scaling-eps", "alpha", "1.0"), ("scaling-eps", "pg_check_every", "7"), ("scaling-gamma", "Ss", "1,2"),
    ("scaling-n", "orm_step_units", "response,position"), ("scaling-n", "orm_token_Ns", "4,5"),
    ("scaling-n", "prm_step_units", "token,walk"), ("scaling-n", "prm_extra_Ns", "0,80"),
    ("scaling-alpha", "step_units", "sequence"),
    ("scaling-gamma", "step_units", "tokens"), ("scaling-gamma", "token_Ss", "2,3"),
    ("report", "profile", "fast"), ("report", "only", ["no-such-experiment"]), ("report", "skip", ["nosuch"]),
    ("report", "seeds", 0),
])
def test_bad_settings_raise_before_compiling(name, key, value):
    with pytest.raises(ValueError, match=key.split("_")[0]):
        if name == "report":
            report.plan(report.resolve({key: value}))
        else:
            get(name).resolve({key: value})


# ---------------------------------------------------------------------------------
# End to end at a tiny size
# ---------------------------------------------------------------------------------


def test_scaling_n_tiny(tmp_path):
    # Algorithm 2 under both readings of the step, Algorithm 1 under the paper's (its per-token
    # reading runs end to end in test_regression's small case, the verdicts per reading below)
    summary, table, _ = run_tiny("scaling-n", tmp_path, 2, ks=4, Ns="1,3,4,5,6", eps=0.1, max_steps=400,
                                 check_every=5, n_boot=50, pretrain_steps=5, orm_step_units="response",
                                 prm_extra_Ns="")
    series = [f"{b}_k4" for b in ("uniform", "pretrained")]
    assert set(summary["slopes"]) == {f"{a}_{s}{t}" for s in series for a, t in (
        ("orm", ""), *((p, row) for p in ("prm", "prm_response") for row in ("", "_curvature", "_all_N")))}
    # each record names its reading: Algorithm 2's own (per token) keeps the plain names
    for s in series:
        for row in ("", "_curvature", "_all_N"):
            assert summary["slopes"][f"prm_{s}{row}"]["reading"] == "token"
            assert summary["slopes"][f"prm_response_{s}{row}"]["reading"] == "response"
            assert summary["slopes"][f"prm_response_{s}{row}"]["note"].endswith("; the response-level step")
    assert list(summary["verdict"]) == ["C5 under the response-level step", "C5", "C9 under the response-level step",
                                        "C9 under the per-token step", "C9"]
    for unit, name in (("token", "prm_uniform_k4"), ("response", "prm_response_uniform_k4")):
        # C9's regime: N·min(1/Q^TL, k) ≥ 1/ε, i.e. N·4 ≥ 10 for the uniform base
        assert summary["slopes"][name]["regime"] == [3.0, 6.0]
        assert summary["slopes"][f"{name}_all_N"]["regime"][0] == 1.0
        # C9's test on those four N: the bound is the share of N·ln(N/δ) there plus 0.1
        c9 = summary["slopes"][f"{name}_curvature"]
        Ns = np.array([3.0, 4.0, 5.0, 6.0])
        c2, c1, _ = np.polyfit(Ns, Ns * np.log(Ns / 0.1), 2)
        assert c9["s_log"] == pytest.approx(c2 * 9 / (c1 + c2 * 9))
        assert c9["accept"][1] == pytest.approx(c9["s_log"] + 0.1) and c9["accept_ci"]
        assert c9["n_points"] == 4 and c9["claim"] == "C9"
        assert c9["verdict"] in ("confirmed", "not confirmed", f"conditional (on {READINGS[unit]})")
        assert c9["verdict"] == verdict({**c9, "verdict": None})
        assert "accept" not in summary["slopes"][name]  # the log-log slope is reported only
        assert f"{name}_curvature: C9's curvature share" in get("scaling-n").text(summary)
    # from the (5-step) pre-trained base fewer N qualify: no fit on under four, no fallback
    m0 = 1.0 / summary["bases"]["pretrained_k4"]["Q_TL_q0"][0]
    qualify = [n for n in (1, 3, 4, 5, 6) if n * m0 >= 10]
    for name in ("prm_pretrained_k4", "prm_response_pretrained_k4"):
        pre = summary["slopes"][f"{name}_curvature"]
        assert 1 <= len(qualify) < 4 and pre["n_points"] == len(qualify) and pre["verdict"] == "not estimable"
        assert summary["slopes"][name]["regime"][0] == qualify[0]
    assert summary["verdict"]["C9"] == "not confirmed"  # a series not estimable under each reading
    # one row per run: seeds x bases x N (5 for each algorithm and reading)
    assert table["hit"].shape == (2 * 2 * 5 * 3,)
    assert set(table["step_unit"][table["alg"] == "orm"].tolist()) == {"response"}
    assert sorted(set(table["step_unit"][table["alg"] == "prm"].tolist())) == ["response", "token"]
    uni = (table["base"] == 0)
    # m of the uniform base: k^N for Alg. 1, k·⌈ln(N/δ)⌉ per position for Alg. 2 (in log space)
    orm = uni & (table["alg"] == "orm")
    np.testing.assert_allclose(table["log_m"][orm], table["N"][orm] * math.log(4), rtol=1e-5)
    prm = uni & (table["alg"] == "prm")
    want = np.log(4 * np.ceil(np.log(table["N"][prm] / 0.1)))
    np.testing.assert_allclose(table["log_m"][prm], want, rtol=1e-5)
    assert summary["slopes"]["orm_uniform_k4"]["claim"] == "C5"
    assert summary["slopes"]["prm_uniform_k4"]["claim"] == "C9"


def _scaling_n_table(shapes: dict, Ns, k: int = 4, seeds: int = 16):
    """A ``scaling-n`` results table from the uniform base at ``k`` whose queries are
    ``shape(N)`` (±1% noise) for each ``(alg, step unit)`` of ``shapes``."""
    rng, rows = np.random.default_rng(0), []
    for (alg, unit), shape in shapes.items():
        for N in Ns:
            for seed in range(seeds):
                rows.append({"alg": alg, "step_unit": unit, "k": k, "base": 0, "N": N, "seed": seed, "hit": True,
                             "log_queries": math.log(shape(N)) + rng.normal(0, 0.01),
                             "log_q0": -N * math.log(k), "log_q0_tl": -math.log(k)})
    return lpg.results.Table({key: np.asarray([r[key] for r in rows]) for key in rows[0]})


def test_scaling_n_gives_c5_and_c9_a_verdict_per_reading():
    """C9 confirmed under the per-token step only (affine there, quadratic under the
    response-level step) is conditional on it; C5 under both readings is confirmed."""
    exp, Ns = get("scaling-n"), [1, 2, 4, 8, 16, 32, 64, 80, 96, 112, 128]
    config = exp.resolve({"ks": "4", "bases": "uniform", "Ns": ",".join(map(str, Ns)), "n_boot": "300"})
    orm = lambda n: 100 * 4.0**n  # noqa: E731  (ln Q = N ln k)
    shapes = {("orm", "response"): orm, ("orm", "token"): orm, ("prm", "token"): lambda n: 7000 + 1300 * n,
              ("prm", "response"): lambda n: 7000 + 1300 * n + 1300 / 256 * n**2}
    summary = scaling_n.summary_of(_scaling_n_table(shapes, Ns), config)
    slopes, checks = summary["slopes"], summary["verdict"]
    assert slopes["prm_uniform_k4_curvature"]["verdict"] == "conditional (on the per-token step)"
    assert slopes["prm_response_uniform_k4_curvature"]["verdict"] == "not confirmed"
    assert slopes["orm_uniform_k4"]["verdict"] == slopes["orm_token_uniform_k4"]["verdict"] == "confirmed"
    assert checks == {"C5 under the response-level step": True, "C5 under the per-token step": True, "C5": "confirmed",
                      "C9 under the response-level step": False, "C9 under the per-token step": True,
                      "C9": "conditional (on the per-token step)"}
    text = exp.text(summary)
    assert "C9: conditional (on the per-token step)" in text
    assert "prm_response_uniform_k4_curvature: C9's curvature share" in text and "the response-level step: not" in text
    shapes[("prm", "response")] = shapes[("prm", "token")]
    checks = scaling_n.summary_of(_scaling_n_table(shapes, Ns), config)["verdict"]
    assert checks["C9"] == "confirmed" and checks["C9 under the response-level step"]


def test_scaling_alpha_tiny_keeps_censored_runs(tmp_path):
    summary, table, cfg = run_tiny("scaling-alpha", tmp_path, 2, N=6, orm_alphas="0.1,0.001", pg_alphas="0.1,0.001",
                                   orm_max_steps=400, pg_max_steps=400, orm_check_every=10, pg_check_every=10,
                                   n_boot=50, dominance=1, step_units="response")
    x = scaling_family.swept_values(table, cfg, "alpha")  # each run's alpha, snapped to the configured values
    pg = table["alg"] == "pg"
    # PG from alpha = 1e-3 cannot reach 1 - eps in 400 steps: censored, kept, budget recorded
    low = pg & np.isclose(x, 1e-3)
    assert np.all(~table["hit"][low]) and np.all(table["steps"][low] == 400)
    rec = summary["slopes"]["pg_queries_vs_alpha"]
    assert rec["n_censored"] == int(low.sum()) and rec["verdict"] == "not estimable"
    assert summary["censored_runs"] >= int(low.sum())
    orm = table["alg"] == "orm"
    np.testing.assert_allclose(np.exp(table["log_q0"][orm]), x[orm], rtol=1e-3)


def test_scaling_eps_and_gamma_tiny(tmp_path):
    summary, table, _ = run_tiny("scaling-eps", tmp_path, 2, N=4, algs="pg", pg_epss="0.3,0.1", pg_max_steps=2000,
                                 pg_check_every=10, n_boot=50, dominance=1, pg_token_epss="0.3,0.2")
    assert set(summary["slopes"]) == {"pg_queries_vs_eps", "pg_token_queries_vs_eps"}  # both readings of the step
    assert [summary["slopes"][n]["reading"] for n in ("pg_queries_vs_eps", "pg_token_queries_vs_eps")] == [
        "response", "token"]
    assert np.all(table["hit"]) and sorted(set(table["step_unit"].tolist())) == ["response", "token"]
    assert sorted(set(table["eps"][table["step_unit"] == "token"].tolist())) == pytest.approx([0.2, 0.3])
    assert list(summary["verdict"]) == ["C2 under the response-level step", "C2 under the per-token step", "C2"]
    summary, table, _ = run_tiny("scaling-gamma", tmp_path, 2, N=3, Ss="2,4", alpha=0.1, eps=0.3, max_steps=2000,
                                 n_boot=50, step_units="token", token_Ss="2,4")
    assert set(summary["slopes"]) == {"orm_token_queries_vs_gamma", "orm_token_queries_per_context_vs_gamma"}
    assert sorted(set(table["S"].tolist())) == [2, 4] and set(table["step_unit"].tolist()) == {"token"}
    np.testing.assert_allclose(sorted(set(table["gamma"].tolist())),
                               sorted(math.sqrt(4 / (3 * S)) for S in (2, 4)))


def _family_table(slopes: dict, alphas, seeds: int = 8):
    """A ``scaling-alpha`` results table whose queries are ``100·α^slope`` (±2% noise)
    for each ``(alg, step unit)`` of ``slopes``."""
    rng, cols = np.random.default_rng(0), {k: [] for k in ("alg", "step_unit", "log_alpha", "eps", "log_queries",
                                                           "hit", "seed")}
    for (alg, unit), slope in slopes.items():
        for a in alphas:
            for seed in range(seeds):
                for key, v in (("alg", alg), ("step_unit", unit), ("log_alpha", math.log(a)), ("eps", 0.1),
                               ("log_queries", math.log(100 * a**slope) + rng.normal(0, 0.02)), ("hit", True),
                               ("seed", seed)):
                    cols[key].append(v)
    return lpg.results.Table({k: np.asarray(v) for k, v in cols.items()})


def test_a_claim_confirmed_under_one_reading_only_is_conditional():
    # C3 (Alg. 1): slope -1 under the paper's reading, -0.5 under the per-token one;
    # C2 (PG): -1 under both; then under neither
    exp, alphas = get("scaling-alpha"), [1e-2, 1e-3, 1e-4, 1e-5]
    config = exp.resolve({"orm_alphas": "1e-2,1e-3,1e-4,1e-5", "pg_alphas": "1e-2,1e-3,1e-4,1e-5", "n_boot": "200"})
    table = _family_table({("orm", "response"): -1.0, ("orm", "token"): -0.5, ("pg", "response"): -1.0,
                           ("pg", "token"): -1.0}, alphas)
    summary = scaling_family.family_summary(table, config, "alpha", ["C2", "C3"])
    slopes, checks = summary["slopes"], summary["verdict"]
    assert slopes["orm_queries_vs_alpha"]["verdict"] == "conditional (on the response-level step)"
    assert slopes["orm_token_queries_vs_alpha"]["verdict"] == "not confirmed"
    assert slopes["pg_queries_vs_alpha"]["verdict"] == slopes["pg_token_queries_vs_alpha"]["verdict"] == "confirmed"
    assert checks == {"C3 under the response-level step": True, "C3 under the per-token step": False,
                      "C3": "conditional (on the response-level step)", "C2 under the response-level step": True,
                      "C2 under the per-token step": True, "C2": "confirmed"}
    assert "C3: conditional (on the response-level step)" in exp.text({**summary, "timing": {}})
    table = _family_table({("orm", "response"): -2.0, ("orm", "token"): -0.5, ("pg", "response"): -1.0,
                           ("pg", "token"): -1.0}, alphas)
    checks = scaling_family.family_summary(table, config, "alpha", ["C2", "C3"])["verdict"]
    assert checks["C3"] == "not confirmed" and not checks["C3 under the response-level step"]


# ---------------------------------------------------------------------------------
# lpg report
# ---------------------------------------------------------------------------------

TINY_EPS = {"N": "4", "algs": "pg", "pg_epss": "0.3,0.1", "pg_max_steps": "2000", "pg_check_every": "10",
            "n_boot": "50", "dominance": "1", "step_units": "response"}


def with_profile(monkeypatch, name: str, profile: str, prof: Profile):
    """Give experiment ``name`` the profile ``prof`` under ``profile`` for this test."""
    cls = type(get(name))
    monkeypatch.setattr(cls, "profiles", {**cls.profiles, profile: prof})


def test_report_from_finished_experiments(tmp_path, monkeypatch):
    """``lpg report`` over one tiny experiment: REPORT.md has the table and the figure,
    ``seeds`` overrides every profile's seeds, and a failing experiment is reported
    instead of stopping the report."""
    with_profile(monkeypatch, "scaling-eps", "quick", Profile(2, TINY_EPS))
    # the quick profile's seeds unless seeds is given, for every experiment
    assert {name: s for name, _, s, _ in report.plan(report.resolve({"profile": "quick", "cpu_skip": []}))} == {
        name: exp.profile("quick").seeds for name, exp in available().items()}
    assert {s for _, _, s, _ in report.plan(report.resolve({"profile": "quick", "seeds": 5, "cpu_skip": []}))} == {5}
    summary = report.run({"profile": "quick", "seeds": 3, "only": ["scaling-eps"]}, tmp_path)
    assert summary["experiments"]["scaling-eps"]["status"] == "ok"
    assert summary["experiments"]["scaling-eps"]["seeds"] == 3
    assert "figure1" not in summary["experiments"]  # `only` names what runs: nothing else is listed
    if jax.default_backend() == "cpu":  # the paper-size Figure 1 is left out on a CPU unless asked for
        assert report.cpu_skipped(report.resolve({})) == ["figure1"]
        assert "figure1" not in [name for name, *_ in report.plan(report.resolve({}))]
        assert report.cpu_skipped(report.resolve({"only": ["figure1"]})) == []
    md = (tmp_path / "REPORT.md").read_text()
    assert "| claim | experiment | quantity | theory exponent | measured exponent (95% CI)" in md
    assert "![scaling-eps](scaling-eps/scaling_eps.png)" in md
    c2 = md.split("## C2")[1].split("## C3")[0]
    assert "### `scaling-eps`" in c2 and "pg_queries_vs_eps" in c2
    assert "No registered experiment measures this claim" in md.split("## C7")[1]
    rows = [r for r in summary["rows"] if r["quantity"] == "pg_queries_vs_eps"]
    assert rows and rows[0]["claim"] == "C2"
    assert isinstance(report.text(summary), str)
    # seeds=3 is what every experiment ran with, not the profile's 2
    ran = [name for name, res in summary["experiments"].items() if res["status"] == "ok"]
    assert ran == ["scaling-eps"]
    for name in ran:
        assert json.loads((tmp_path / name / "config.json").read_text())["seeds"] == 3
    # --resume reuses a finished experiment only when the same lpg code computed it
    stored = json.loads((tmp_path / "scaling-eps" / "config.json").read_text())
    resolved = {k: v for k, v in stored.items() if k not in ("experiment", "seeds")}
    assert resolved == to_jsonable(get("scaling-eps").resolve(profile="quick"))
    assert report._same_config(tmp_path / "scaling-eps", "scaling-eps", resolved, 3)
    assert not report._same_config(tmp_path / "scaling-eps", "scaling-eps", resolved, 2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lpg.results, "code_digest", lambda: "edited-source")
        mp.setattr(report, "code_digest", lambda: "edited-source")  # report.py's own reference to it
        assert not report._same_config(tmp_path / "scaling-eps", "scaling-eps", resolved, 3)
    # a failed experiment is reported with its error
    results = {"scaling-eps": {"status": "failed", "seconds": 1.0, "seeds": 2, "error": "RuntimeError: boom"},
               "figure1": {"status": "skipped on CPU (paper scale: run it on an accelerator)", "seconds": 0.0}}
    report.write_report(tmp_path, results)
    md = (tmp_path / "REPORT.md").read_text()
    assert "did not finish**: RuntimeError: boom" in md
    assert "*Not run here: skipped on CPU" in md.split("## C9")[1]  # under figure1's claims
    # an experiment answering an open question (claims Q1..Q5) is reported under "Beyond the paper", after C9
    results["noisy"] = {"status": "failed", "seconds": 1.0, "seeds": 2, "error": "RuntimeError: q", "claims": ["Q2"]}
    report.write_report(tmp_path, results)
    md = (tmp_path / "REPORT.md").read_text()
    beyond = md.split("## Beyond the paper")[1]
    assert "## C9" in md.split("## Beyond the paper")[0] and "## C" not in beyond
    assert [line for line in beyond.splitlines() if line.startswith("### Q")] == [f"### {q}" for q in report.QUESTIONS]
    q2 = beyond.split("### Q2")[1].split("### Q3")[0]
    assert "#### `noisy`" in q2 and "RuntimeError: q" in q2
    assert "No registered experiment measures this question." in beyond.split("### Q3")[1]
    # the report's own files
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["experiment"] == "report" and config["seeds"] == 3 and config["only"] == ["scaling-eps"]


def test_report_validates_every_experiment_before_running_any(tmp_path, monkeypatch, capsys):
    """A bad setting in the last experiment's profile stops ``lpg report`` before the
    first experiment runs: exit 2, one line naming the setting, nothing written."""
    last = list(available())[-1]
    bad, setting = next((k, s) for k, s in get(last).settings.items()
                        if s.kind == "int" and not s.is_list and s.low is not None)
    with_profile(monkeypatch, last, "quick", Profile(2, {bad: str(setting.low - 1)}))
    message = f"{bad} must be {setting.allowed()}, got {setting.low - 1}"
    calls = []

    def never(*args, **kwargs):
        calls.append(kwargs.get("desc"))
        raise AssertionError("nothing may run when a setting is bad")

    monkeypatch.setattr(spec, "sweep", never)
    out = tmp_path / "report"
    with pytest.raises(SystemExit) as info:
        cli.main(["report", "--profile", "quick", "--out", str(out)])
    captured = capsys.readouterr()
    assert info.value.code == cli.EXIT_USAGE
    assert captured.err == f"lpg: error: {message}\n" and captured.out == ""
    with pytest.raises(ValueError, match=re.escape(message)):
        report.run({"profile": "quick"}, out)
    assert calls == [] and not out.exists()


def test_report_counts_every_verdict():
    """The summary line counts each verdict of analysis.verdict, illustrations apart from
    the rows reported without an acceptance range."""
    recs = [{"estimate": 1.0, "accept": [0.9, 1.1]}, {"estimate": 2.0, "accept": [0.9, 1.1]},
            {"estimate": 1.0, "accept": [0.9, 1.1], "illustration": True}, {"estimate": 1.0},
            {"estimate": float("nan"), "accept": [0.9, 1.1]}, {"estimate": 1.05, "accept": [0.9, 1.1]},
            {"estimate": 1.0, "accept": [0.9, 1.1], "conditional": "the per-token step"}]
    rows = [{"verdict": verdict(r)} for r in recs]
    assert rows[-1]["verdict"] == "conditional (on the per-token step)"
    assert report.verdict_counts(rows) == (
        "2 exponents confirmed, 1 conditional (on one reading), 1 not confirmed, 1 illustrations (cannot refute "
        "their claim), 2 reported without an acceptance range or not estimable.")
