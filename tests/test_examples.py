"""The scripts in examples/ run end to end at a tiny size (``--tiny``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--tiny", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", cwd=tmp_path)
    lines = out.strip().splitlines()
    assert lines[0].startswith("ORM: test error [") and lines[1].startswith("PRM: test error [")


def test_custom_sweep_writes_results_and_resumes(tmp_path):
    out = run_example("custom_sweep.py", "--out", "res", cwd=tmp_path)
    assert "adaptive: final test error by N" in out and "constant: final test error by N" in out
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert set(summary) == {"adaptive", "constant"}
    assert all(v["n"] == 2 for v in summary["adaptive"].values())
    again = run_example("custom_sweep.py", "--out", "res", "--resume", cwd=tmp_path)
    assert again == out  # resumed from the checkpoints: the same numbers
