"""``lpg report``: every registered experiment, one report of the paper's claims (PAPER.md §4).

Runs each registered experiment with a profile — ``default`` (its defaults and default
seeds), ``quick`` (a smoke run of the whole pipeline) or ``gpu`` — or with ``seeds``
seeds when given, each into its own sub-directory, draws its figures, and writes
``REPORT.md`` beside them:

* a table with one row per fitted exponent: claim | experiment | quantity | theory
  exponent | measured exponent (95% CI) | regime | censored runs | verdict;
* one section per claim (C1–C9, in our words from PAPER.md §4) with the figures of the
  experiments that measure it (their ``claims``), their slope rows, the pass/fail checks
  an experiment states itself (its ``summary["verdict"]``), and its text table;
* a "Beyond the paper" section, one subsection per open question (:data:`QUESTIONS`,
  Q1–Q5), laid out the same way for the experiments that list it in their ``claims``.

Verdicts are read, never made up: a slope with an acceptance range gets ``confirmed`` or
``not confirmed`` (and the evidence — estimate, interval, regime, censoring — stays in
the row); one without a range is ``reported``; a point set too censored to fit is ``not
estimable``. An experiment that fails is reported with its error and the report goes on.
With ``resume``, a finished sub-directory whose ``config.json`` matches, computed by the
same lpg source code (``env.json``'s ``lpg_code``), is reused.

``cpu_skip`` (default: ``figure1``, the paper-size Figure 1 — batch 1024 × 4000 steps of
sampled ±1-reward PG at ``N = 128``, ``k = 32``, far beyond the 45-minute CPU budget) lists
experiments left out when the default backend is the CPU; the report says so, and
``barrier`` measures the same claims at a CPU size; ``only=figure1`` runs it anyway.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path

import numpy as np

from lpg.algorithms.base import READINGS
from lpg.analysis import fmt_slope, verdict
from lpg.results import (Table, atomic_write_bytes, code_digest, read_results, recorded_run, to_jsonable,
                         write_results)

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

QUESTIONS = {
    "Q1": "Noisy verifiers: outcome and process verifiers that accept a wrong response (prefix) with probability "
          "ρ₊ and reject a correct one with probability ρ₋. How do the query counts of Algorithms 1 and 2 and the "
          "final likelihood of y* depend on ρ₊, ρ₋ and N; where does the process reward's linear-in-N advantage "
          "disappear; where does on-policy PG converge to a wrong response?",
    "Q2": "A process reward paid for with outcome queries: a prefix labelled by r rollouts of the base policy, "
          "completed and checked by the outcome verifier (a Monte-Carlo value). Counting every outcome query the "
          "labelling spends, is the total still linear in N, and when does it beat the outcome reward used directly?",
    "Q3": "Several correct responses: c correct responses per context, some sets not separable by one linear policy. "
          "Does the outcome reward's barrier scale as k^N/c, what does the process reward do when correct prefixes "
          "branch, and does PG concentrate on one answer or spread?",
    "Q4": "Estimating the likelihood quantile from samples: Q_q0(ε) estimated from m samples per context "
          "(pass@m-style), its bias and variance against the exact LQ, and how well it predicts the outcome "
          "reward's query count (C4/C6) as m grows.",
    "Q5": "The practice of LLM post-training: a KL penalty towards the base, an entropy bonus or a sampling "
          "temperature on the outcome-reward PG, reward-to-go for the process reward, a dense partial-credit reward. "
          "Which, if any, lifts the off-support centres without a process verifier, and at what query cost?",
}
"""The open questions the paper leaves (its last section; REPORT.md's "Beyond the paper"):
an experiment answering one lists it in ``claims`` like a claim of PAPER.md §4."""

PROFILES = ("default", "quick", "gpu")
DEFAULTS = {"profile": "default", "seeds": None, "only": [], "skip": [], "cpu_skip": ["figure1"]}


def _claims_of(summary: dict | None) -> list[str]:
    """The claims an experiment's summary names and those its slope rows name."""
    claims = [str(c) for c in (summary or {}).get("claims") or []]
    for rec in ((summary or {}).get("slopes") or {}).values():
        if isinstance(rec, dict) and rec.get("claim") and rec["claim"] not in claims:
            claims.append(rec["claim"])
    return claims


def _result_claims(name: str, res: dict) -> list[str]:
    """The claims a result is reported under: its ``claims`` (else the registered
    experiment's, so a failed run without them keeps its sections) and those its summary
    and slope rows name."""
    own = res.get("claims")
    if own is None:
        from lpg.experiments import available

        exp = available().get(name)
        own = exp.claims if exp is not None else ()
    claims = [str(c) for c in own]
    return claims + [c for c in _claims_of(res.get("summary")) if c not in claims]


def slope_rows(name: str, summary: dict) -> list[dict]:
    """One row per fitted exponent of an experiment's summary (``reading``: the reading of
    the adaptive step its verdict assumes, in words, where the record names one)."""
    rows = []
    for qty, rec in (summary.get("slopes") or {}).items():
        if not isinstance(rec, dict) or "estimate" not in rec:
            continue
        claim = rec.get("claim") or ", ".join(summary.get("claims") or [])
        rows.append({"claim": claim, "experiment": name, "quantity": qty, "theory": rec.get("theory"),
                     "measured": fmt_slope(rec), "regime": rec.get("regime"), "n_censored": rec.get("n_censored"),
                     "n_runs": rec.get("n_runs"), "verdict": rec.get("verdict") or verdict(rec),
                     "note": rec.get("note", ""),
                     "reading": READINGS.get(rec["reading"], rec["reading"]) if rec.get("reading") else None})
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


def verdict_counts(rows: list[dict]) -> str:
    """One line counting the rows by verdict: confirmed, conditional (confirmed under one
    reading only), not confirmed, illustrations (measurements that cannot refute their
    claim), and the rest (reported without an acceptance range, or not estimable)."""
    n = {v: sum(r["verdict"] == v for r in rows) for v in ("confirmed", "not confirmed", "illustration")}
    n["conditional"] = sum(str(r["verdict"]).startswith("conditional") for r in rows)
    rest = len(rows) - sum(n.values())
    return (f"{n['confirmed']} exponents confirmed, {n['conditional']} conditional (on one reading), "
            f"{n['not confirmed']} not confirmed, {n['illustration']} illustrations (cannot refute their claim), "
            f"{rest} reported without an acceptance range or not estimable.")


def _md_table(rows: list[dict]) -> list[str]:
    out = ["| claim | experiment | quantity | theory exponent | measured exponent (95% CI) | regime | censored/runs "
           "| verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cens = "—" if r["n_runs"] is None else f"{r['n_censored'] or 0}/{r['n_runs']}"
        reading = f" ({r['reading']})" if r.get("reading") else ""
        out.append(f"| {r['claim']} | `{r['experiment']}` | `{r['quantity']}`{reading} | {_fmt_num(r['theory'])} | "
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


def _section(claim: str, text: str, kind: str, level: str, results: dict) -> list[str]:
    """REPORT.md's section of one claim (or open question) ``claim``: its text, then each
    experiment that lists it, with figures, slope rows, stated checks and text table
    (experiments one heading level below ``level``)."""
    names = [n for n, res in results.items() if claim in _result_claims(n, res)]
    lines = [f"{level} {claim}", "", f"*{text}*", ""]
    if not names:
        return lines + [f"No registered experiment measures this {kind}.", ""]
    for name in names:
        res = results[name]
        lines += [f"{level}# `{name}`", ""]
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
        if res.get("text"):
            lines += ["```", res["text"], "```", ""]
    return lines


def write_report(out_dir: Path, results: dict) -> Path:
    """``REPORT.md`` from ``results[name] = {status, seconds, seeds, claims, summary,
    figures, text, error}`` (``claims`` defaults to the registered experiment's); figures
    are linked relative to ``out_dir``."""
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
    lines += ["", verdict_counts(rows), ""]
    for claim, text in CLAIMS.items():
        lines += _section(claim, text, "claim", "##", results)
    lines += ["## Beyond the paper", "",
              "Questions the paper leaves open (its last section), answered by simulation: each experiment's "
              "docstring states its prediction, derived before it was run.", ""]
    for question, text in QUESTIONS.items():
        lines += _section(question, text, "question", "###", results)
    path = out_dir / "REPORT.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def _same_config(sub: Path, name: str, config: dict, seeds: int) -> bool:
    try:
        stored = json.loads((sub / "config.json").read_text())
        same_code = json.loads((sub / "env.json").read_text()).get("lpg_code") == code_digest()
    except (OSError, json.JSONDecodeError):
        return False
    want = to_jsonable({"experiment": name, "seeds": seeds, **config})
    return same_code and all(stored.get(k) == v for k, v in want.items()) and (sub / "summary.json").is_file()


def cpu_skipped(options: dict) -> list[str]:
    """The experiments of ``cpu_skip`` that are left out because no accelerator is
    present (the default backend is the CPU): none when ``only`` names what to run."""
    import jax

    if jax.default_backend() != "cpu" or options["only"]:
        return []
    return list(options["cpu_skip"])


def resolve(options: dict) -> dict:
    """The report's options with their defaults, checked."""
    from lpg.experiments import available

    opts = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown report option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(DEFAULTS)}")
    if opts["profile"] not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(map(repr, PROFILES))}, got {opts['profile']!r}")
    seeds = opts["seeds"]
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    exps = available()
    for key in ("only", "skip", "cpu_skip"):
        for n in opts[key]:
            if n not in exps:
                raise ValueError(f"{key} must name registered experiments, got {n!r}; available: {', '.join(exps)}")
    return opts


def plan(options: dict) -> list[tuple]:
    """(name, experiment, seeds, resolved config) of every experiment to run, every
    config validated before anything runs."""
    from lpg.experiments import available

    skip = set(options["skip"]) | set(cpu_skipped(options))
    out = []
    for name, exp in available().items():
        if name in skip or (options["only"] and name not in options["only"]):
            continue
        seeds = options["seeds"] or exp.profile(options["profile"]).seeds
        out.append((name, exp, seeds, exp.resolve(profile=options["profile"])))
    return out


def run(options: dict, out_dir: Path, resume: bool = False) -> dict:
    """Run the report (see the module docstring); returns its summary."""
    options = resolve(options)
    out_dir = Path(out_dir)
    results = {}
    for name, exp, seeds, resolved in plan(options):
        sub = out_dir / name
        t0 = time.perf_counter()
        res = {"seeds": seeds, "claims": list(exp.claims)}
        try:
            if resume and _same_config(sub, name, resolved, seeds):
                _, _, summary = read_results(sub)
            else:
                # The report's own sub-directory: an earlier run there is replaced (once the new one
                # has finished); with resume, a run recorded there (interrupted or finished) continues.
                summary = exp.run(resolved, seeds=seeds, out_dir=sub, resume=resume and recorded_run(sub) is not None,
                                  overwrite=True)
            figures = exp.plot(sub)
            res.update(status="ok", summary=summary, text=exp.text(summary),
                       figures=[str(Path(p).relative_to(out_dir)) for p in figures])
        except Exception as e:  # noqa: BLE001 — a failed experiment is reported, not hidden
            res.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=5))
        res["seconds"] = time.perf_counter() - t0
        results[name] = res
    from lpg.experiments import available

    for name in cpu_skipped(options):
        if name not in options["skip"]:
            results[name] = {"status": "skipped on CPU (paper scale: run it on an accelerator)", "seconds": 0.0,
                             "claims": list(available()[name].claims)}
    rows = [r for n, res in results.items() if res.get("summary") for r in slope_rows(n, res["summary"])]
    summary = {
        "experiment": "report",
        "profile": options["profile"],
        "experiments": {n: {k: v for k, v in res.items() if k not in ("summary", "text")} for n, res in results.items()},
        "rows": rows,
        "total_s": float(sum(res["seconds"] for res in results.values())),
    }
    table = Table({"experiment": np.array(list(results), dtype=str),
                   "seconds": np.array([res["seconds"] for res in results.values()], np.float64)})
    write_results(out_dir, config={"experiment": "report", **options}, table=table, summary=summary)
    write_report(out_dir, results)
    return summary


def replot(out_dir: Path) -> list[Path]:
    """Redraw every experiment's figures and rewrite ``REPORT.md`` from disk."""
    from lpg.experiments import available

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
                res.update(summary=sub_summary, text=exps[name].text(sub_summary),
                           figures=[str(Path(p).relative_to(out_dir)) for p in figures])
            except Exception as e:  # noqa: BLE001
                res.update(status="failed", error=f"{type(e).__name__}: {e}")
        results[name] = res
    report = write_report(out_dir, results)
    return [report] + [out_dir / f for res in results.values() for f in res.get("figures", [])]


def text(summary: dict) -> str:
    lines = [f"{'claim':6} {'experiment':18} {'quantity':36} {'theory':>7}  {'measured [95% CI]':28} verdict"]
    for r in summary["rows"]:
        lines.append(f"{r['claim'][:6]:6} {r['experiment'][:18]:18} {r['quantity'][:36]:36} "
                     f"{_fmt_num(r['theory']):>7}  {r['measured'][:28]:28} {r['verdict']}")
    failed = [n for n, e in summary["experiments"].items() if e["status"] == "failed"]
    skipped = [n for n, e in summary["experiments"].items() if e["status"].startswith("skipped")]
    lines.append(f"experiments: {len(summary['experiments'])}, failed: {', '.join(failed) or 'none'}, "
                 f"skipped: {', '.join(skipped) or 'none'}; total {summary['total_s']:.0f}s")
    return "\n".join(lines)
