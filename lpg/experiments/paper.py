"""``paper``: every registered experiment, one report (PAPER.md §4).

Runs each registered experiment except itself — at its defaults and default seeds
(``profile=default``), or with the small settings of :data:`QUICK` (``profile=quick``, a
smoke run of the whole pipeline) — each into its own sub-directory, draws its figures,
and writes ``REPORT.md`` beside them:

* a table with one row per fitted exponent: claim | experiment | quantity | theory
  exponent | measured exponent (95% CI) | regime | censored runs | verdict;
* one section per claim (C1–C9, in our words from PAPER.md §4) with the figures of the
  experiments that measure it, their slope rows, the pass/fail checks an experiment
  states itself (its ``summary["verdict"]``), and its text table.

Verdicts are read, never made up: a slope with an acceptance range gets ``confirmed`` or
``not confirmed`` (and the evidence — estimate, interval, regime, censoring — stays in
the row); one without a range is ``reported``; a point set too censored to fit is ``not
estimable``. An experiment that fails is reported with its error and the report goes on.
With ``resume``, a finished sub-directory whose ``config.json`` matches, computed by
the same lpg source code (``env.json``'s ``lpg_code``), is reused.

``cpu_skip`` (default: ``figure1``, the paper-size Figure 1 — batch 1024 × 4000 steps of
sampled ±1-reward PG at ``N = 128``, ``k = 32``, far beyond the 45-minute CPU budget) lists
experiments left out when the default backend is the CPU; the report says so, and
``barrier`` measures the same claims at a CPU size. ``--set cpu_skip=`` (empty) or
``--set only=figure1`` runs them anyway.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path

import numpy as np

from lpg import _checks
from lpg.experiments import Experiment, available, register
from lpg.experiments._scaling import fmt_slope, verdict
from lpg.results import atomic_write_bytes, read_results, write_results

PROFILES = ("default", "quick")

CLAIMS = {
    "C1": "SGD with the adaptive step reaches error Õ(1/(γ²T)); a constant step pays Õ(N/(γ²T)).",
    "C2": "On-policy PG, per sample: E[p(y*)] ≥ 1 − Õ(1/(π_α α γ² T)) — iterations to 1−ε grow like 1/α.",
    "C3": "Best-of-m (Algorithm 1) needs Õ((1/α + 1/ε)/γ²) queries to likelihood 1−ε, which is minimax: "
          "slope −1 in α and in ε, −2 in γ.",
    "C4": "The overall ORM error after T = Q = Õ(min(1/Q_q0(ε), k^N)/(γ²ε)) queries: the base model's "
          "Likelihood Quantile governs the cost.",
    "C5": "Algorithm 1 uses Q = Õ((m + 1/ε)/γ²) queries with m = min(⌈1/Q_q0(ε)⌉, k^N); from a uniform base "
          "that is exponential in N (ln Q ∝ N ln k).",
    "C6": "Lower bound: any ORM method needs Ω̃(1/(Q_q(ε)γ²)) queries (D ≥ k/γ²); no ORM variant beats the LQ curve.",
    "C7": "Online PG with uniform exploration makes Õ(k^N/γ²) mistakes, and Ω(k^N/(Nγ²)) are necessary.",
    "C8": "Supervised pre-training with n ≲ 1/(γ²ε) samples can leave Q_q(ε) ≤ k^-N: a small error does not "
          "mean the base model supports the context space.",
    "C9": "Algorithm 2 (PRM) needs Q = Õ(N·min(1/Q^TL_q0(ε), k)/γ² + 1/(γ²ε)) queries — linear in N, worst case Nk.",
}

FALLBACK_CLAIMS = {
    "sgd-lr": ["C1"],
    "scaling-alpha": ["C2", "C3"],
    "scaling-eps": ["C3"],
    "scaling-gamma": ["C3"],
    "lq-governs": ["C4", "C6"],
    "scaling-n": ["C5", "C9"],
    "online": ["C7"],
    "pretrain-barrier": ["C8"],
    "figure2": ["C8"],
    "baselines": ["C6"],
    "barrier": ["C4", "C6", "C9"],
    "figure1": ["C4", "C6", "C9"],
}
"""Claims of experiments whose summary does not name them (``summary["claims"]``)."""

QUICK: dict[str, tuple[int, dict[str, str]]] = {
    "scaling-n": (4, {"ks": "4,32", "Ns": "1,4,16,64", "eps": "0.1", "max_steps": "4000", "n_boot": "300"}),
    "scaling-alpha": (4, {"orm_alphas": "1e-1,1e-2,1e-3,1e-4", "pg_alphas": "1e-1,1e-2,1e-3", "n_boot": "300",
                          "dominance": "10"}),
    "scaling-eps": (4, {"orm_epss": "1e-1,1e-2,1e-3", "pg_epss": "1e-1,1e-2,1e-3", "n_boot": "300",
                        "dominance": "10"}),
    "scaling-gamma": (4, {"Ss": "2,4,8", "n_boot": "300"}),
}
"""``profile=quick``: (seeds, ``--set`` overrides) per experiment; an experiment not
listed runs with 2 seeds at its defaults."""


def _claims_of(name: str, summary: dict | None) -> list[str]:
    if summary and isinstance(summary.get("claims"), list) and summary["claims"]:
        return [str(c) for c in summary["claims"]]
    return FALLBACK_CLAIMS.get(name, [])


def _all_claims(name: str, summary: dict | None) -> list[str]:
    """The experiment's claims and those its slope rows name."""
    claims = list(_claims_of(name, summary))
    for rec in ((summary or {}).get("slopes") or {}).values():
        if isinstance(rec, dict) and rec.get("claim") and rec["claim"] not in claims:
            claims.append(rec["claim"])
    return claims


def slope_rows(name: str, summary: dict) -> list[dict]:
    """One row per fitted exponent of an experiment's summary."""
    rows = []
    for qty, rec in (summary.get("slopes") or {}).items():
        if not isinstance(rec, dict) or "estimate" not in rec:
            continue
        claim = rec.get("claim") or ", ".join(_claims_of(name, summary))
        v = rec.get("verdict") or verdict(rec)
        rows.append({"claim": claim, "experiment": name, "quantity": qty, "theory": rec.get("theory"),
                     "measured": fmt_slope(rec), "regime": rec.get("regime"), "n_censored": rec.get("n_censored"),
                     "n_runs": rec.get("n_runs"), "verdict": v, "note": rec.get("note", "")})
    return rows


def _fmt_num(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, (int, float)) and math.isfinite(v):
        return f"{v:.3g}"
    return str(v)


def _fmt_regime(reg) -> str:
    if not reg or reg[0] is None:
        return "—"
    return f"[{_fmt_num(reg[0])}, {_fmt_num(reg[1])}]"


def _md_table(rows: list[dict]) -> list[str]:
    out = ["| claim | experiment | quantity | theory exponent | measured exponent (95% CI) | regime | censored/runs "
           "| verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cens = "—" if r["n_runs"] is None else f"{r['n_censored'] or 0}/{r['n_runs']}"
        out.append(f"| {r['claim']} | `{r['experiment']}` | `{r['quantity']}` | {_fmt_num(r['theory'])} | "
                   f"{r['measured']} | {_fmt_regime(r['regime'])} | {cens} | {r['verdict']} |")
    return out


def _checks_lines(summary: dict) -> list[str]:
    checks = summary.get("verdict")
    if not isinstance(checks, dict):
        return []
    lines = ["Checks stated by the experiment:", ""]
    for key, ok in checks.items():
        mark = "pass" if ok is True else ("FAIL" if ok is False else str(ok))
        lines.append(f"- `{key}`: **{mark}**")
    return lines + [""]


def write_report(out_dir: Path, results: dict) -> Path:
    """``REPORT.md`` from ``results[name] = {status, seconds, seeds, summary, figures,
    table, error}``; figures are linked relative to ``out_dir``."""
    out_dir = Path(out_dir)
    rows = [row for name, res in results.items() if res.get("summary") for row in slope_rows(name, res["summary"])]
    rows.sort(key=lambda r: (r["claim"], r["experiment"]))  # stable: each experiment's own order
    env = {}
    if (out_dir / "env.json").is_file():
        env = json.loads((out_dir / "env.json").read_text())
    lines = ["# lpg: the paper's claims, measured", "",
             "Post-Training with Policy Gradients: Optimality and the Base Model Barrier (arXiv 2603.06957). "
             "Every exponent below is fitted to hitting times with censored runs kept (Kaplan–Meier medians, "
             "bootstrap 95% intervals over seeds); see each experiment's docstring for its regime and settings.", ""]
    if env:
        lines += [f"lpg {env.get('lpg')}, jax {env.get('jax')}, backend {env.get('backend')} "
                  f"({env.get('device_kind')}, {env.get('local_device_count')} device(s)).", ""]
    total = sum(r.get("seconds", 0.0) for r in results.values())
    lines += ["| experiment | status | seeds | seconds |", "|---|---|---|---|"]
    for name, res in results.items():
        lines.append(f"| `{name}` | {res['status']} | {res.get('seeds', '—')} | {res.get('seconds', 0.0):.0f} |")
    lines += [f"| total | | | {total:.0f} |", "", "## Summary", ""]
    lines += _md_table(rows) if rows else ["No experiment produced a fitted exponent."]
    n_conf = sum(r["verdict"] == "confirmed" for r in rows)
    n_not = sum(r["verdict"] == "not confirmed" for r in rows)
    lines += ["", f"{n_conf} exponents confirmed, {n_not} not confirmed, "
              f"{len(rows) - n_conf - n_not} reported without an acceptance range or not estimable.", ""]
    for claim, text in CLAIMS.items():
        names = [n for n, res in results.items() if claim in _all_claims(n, res.get("summary"))]
        lines += [f"## {claim}", "", f"*{text}*", ""]
        if not names:
            lines += ["No registered experiment measures this claim.", ""]
            continue
        for name in names:
            res = results[name]
            lines += [f"### `{name}`", ""]
            if res["status"].startswith("skipped"):
                lines += [f"*Not run here: {res['status']}.*", ""]
                continue
            if res["status"] != "ok":
                lines += [f"**The experiment did not finish**: {res.get('error', 'unknown error')}", ""]
                continue
            for fig in res.get("figures", []):
                if fig.endswith(".png"):
                    lines += [f"![{name}]({fig})", ""]
            mine = [r for r in slope_rows(name, res["summary"]) if claim in r["claim"]]
            if mine:
                lines += _md_table(mine) + [""]
                for r in mine:
                    if r["note"]:
                        lines.append(f"- `{r['quantity']}`: {r['note']}")
                lines.append("")
            lines += _checks_lines(res["summary"])
            if res.get("table"):
                lines += ["```", res["table"], "```", ""]
    path = out_dir / "REPORT.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def _same_config(sub: Path, name: str, config: dict, seeds: int) -> bool:
    from lpg.results import code_digest, to_jsonable

    try:
        stored = json.loads((sub / "config.json").read_text())
        same_code = json.loads((sub / "env.json").read_text()).get("lpg_code") == code_digest()
    except (OSError, json.JSONDecodeError):
        return False
    want = to_jsonable({"experiment": name, "seeds": seeds, **config})
    return same_code and all(stored.get(k) == v for k, v in want.items()) and (sub / "summary.json").is_file()


def cpu_skipped(config: dict) -> list[str]:
    """The experiments of ``cpu_skip`` that are left out because no accelerator is
    present (the default backend is the CPU) and ``only`` does not ask for them."""
    import jax

    if jax.default_backend() != "cpu":
        return []
    return [n for n in config["cpu_skip"] if n not in config["only"]]


def plan(config: dict) -> list[tuple[str, Experiment, int, dict]]:
    """(name, experiment, seeds, resolved config) of every experiment to run, every
    config validated before anything runs."""
    exps = available()
    only, skip = config["only"], config["skip"]
    for key in ("only", "skip", "cpu_skip"):
        for n in config[key]:
            if n not in exps or n == "paper":
                raise ValueError(f"{key} must name registered experiments other than 'paper', got {n!r}; "
                                 f"available: {', '.join(k for k in exps if k != 'paper')}")
    skip = set(skip) | set(cpu_skipped(config))
    out = []
    for name, exp in exps.items():
        if name == "paper" or name in skip or (only and name not in only):
            continue
        if config["profile"] == "quick":
            seeds, overrides = QUICK.get(name, (2, {}))
            resolved = exp.resolve({k: v for k, v in overrides.items() if k in exp.defaults})
        else:
            seeds, resolved = exp.default_seeds, exp.resolve({})
        out.append((name, exp, seeds, resolved))
    return out


def run_all(config: dict, out_dir: Path, resume: bool) -> dict:
    results = {}
    for name, exp, seeds, resolved in plan(config):
        sub = out_dir / name
        t0 = time.perf_counter()
        res = {"seeds": seeds}
        try:
            if resume and _same_config(sub, name, resolved, seeds):
                _, _, summary = read_results(sub)
            else:
                summary = exp.run(resolved, seeds=seeds, out_dir=sub, resume=resume)
            figures = exp.plot(sub)
            res.update(status="ok", summary=summary,
                       figures=[str(Path(p).relative_to(out_dir)) for p in figures], table=exp.table(summary))
        except Exception as e:  # noqa: BLE001 — a failed experiment is reported, not hidden
            res.update(status="failed", error=f"{type(e).__name__}: {e}",
                       traceback=traceback.format_exc(limit=5))
        res["seconds"] = time.perf_counter() - t0
        results[name] = res
    return results


@register
class Paper(Experiment):
    name = "paper"
    description = "Run every experiment and write REPORT.md: one section per claim, table of measured vs theory exponents"
    defaults = {"profile": "default", "only": [], "skip": [], "cpu_skip": ["figure1"]}
    default_seeds = 1

    def validate(self, config: dict) -> None:
        _checks.one_of("profile", config["profile"], PROFILES)
        for key in ("only", "skip", "cpu_skip"):
            if not isinstance(config[key], list):
                raise ValueError(f"{key} must be a comma-separated list of experiment names, got {config[key]!r}")

    def run(self, config: dict, *, seeds: int, out_dir: Path, resume: bool = False) -> dict:
        del seeds  # each experiment runs with its own default seeds (or the quick profile's)
        out_dir = Path(out_dir)
        plan(config)  # validate every experiment's settings before running any
        results = run_all(config, out_dir, resume)
        for name in cpu_skipped(config):
            if name not in config["skip"]:
                results[name] = {"status": "skipped on CPU (paper scale: run it on an accelerator)", "seconds": 0.0}
        rows = [r for n, res in results.items() if res.get("summary") for r in slope_rows(n, res["summary"])]
        summary = {
            "experiment": "paper",
            "profile": config["profile"],
            "experiments": {n: {k: v for k, v in res.items() if k not in ("summary", "table")}
                            for n, res in results.items()},
            "rows": rows,
            "total_s": float(sum(res["seconds"] for res in results.values())),
        }
        arrays = {"seconds": np.array([res["seconds"] for res in results.values()], np.float64)}
        write_results(out_dir, config={"experiment": self.name, **config}, arrays=arrays, summary=summary)
        write_report(out_dir, results)
        return summary

    def plot(self, out_dir: Path) -> list[Path]:
        """Redraw every experiment's figures and rewrite ``REPORT.md`` from disk."""
        out_dir = Path(out_dir)
        _, _, summary = read_results(out_dir)
        exps = available()
        results = {}
        for name, info in summary["experiments"].items():
            res = dict(info)
            if res.get("status") == "ok" and name in exps:
                try:
                    _, _, sub_summary = read_results(out_dir / name)
                    figures = exps[name].plot(out_dir / name)
                    res.update(summary=sub_summary, table=exps[name].table(sub_summary),
                               figures=[str(Path(p).relative_to(out_dir)) for p in figures])
                except Exception as e:  # noqa: BLE001
                    res.update(status="failed", error=f"{type(e).__name__}: {e}")
            results[name] = res
        report = write_report(out_dir, results)
        return [report] + [out_dir / f for res in results.values() for f in res.get("figures", [])]

    def table(self, summary: dict) -> str:
        lines = [f"{'claim':6} {'experiment':18} {'quantity':36} {'theory':>7}  {'measured [95% CI]':28} verdict"]
        for r in summary["rows"]:
            lines.append(f"{r['claim'][:6]:6} {r['experiment'][:18]:18} {r['quantity'][:36]:36} "
                         f"{_fmt_num(r['theory']):>7}  {r['measured'][:28]:28} {r['verdict']}")
        failed = [n for n, e in summary["experiments"].items() if e["status"] == "failed"]
        skipped = [n for n, e in summary["experiments"].items() if e["status"].startswith("skipped")]
        lines.append(f"experiments: {len(summary['experiments'])}, failed: {', '.join(failed) or 'none'}, "
                     f"skipped: {', '.join(skipped) or 'none'}; "
                     f"total {summary['total_s']:.0f}s")
        return "\n".join(lines)
