"""Smoke test of the services benchmark (bench/bench_services.py, figure S1 of `python -m bench`):
tiny durations (marked `bench`); the figures of such a run mean little, what is checked is that
every level is measured against a real server process on loopback, without errors, and that
the figures land in summary.md and summary.png.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from tests.support import REPO

import pytest

from bench import bench_services

ROOT = REPO


@pytest.mark.bench
@pytest.mark.parametrize("service", bench_services.SERVICES)
def test_levels_are_measured_without_errors(service):
    res = bench_services.measure(service, seconds=0.15, rounds=1, levels=(1, 8, 32))
    assert set(res["levels"]) == {1, 8, 32}
    for n, level in res["levels"].items():
        assert level["requests"] > 0 and level["rps"] > 0, (n, level)
        assert level["errors"] == 0, (n, level["error_samples"])
        assert 0 < level["p50_ms"] <= level["p99_ms"]
    assert res["ratio"] == pytest.approx(res["levels"][32]["rps"] / res["levels"][1]["rps"])
    figures = bench_services.figures([res], 1.5)
    assert [f.key for f in figures] == [f"S1 {service}", "S1 errors"]
    assert figures[-1].ratio == 0.0 and figures[-1].met is True


@pytest.mark.bench
def test_quick_run_of_p5(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "S1", "--rounds", "1",
                           "--seconds", "0.1", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    rows = {line.split(" | ")[0].strip("| "): line for line in summary.splitlines() if line.startswith("| S1")}
    assert set(rows) == {"S1 centre", "S1 ocsp", "S1 errors"}, summary
    for key in ("S1 centre", "S1 ocsp"):
        ratio = float(rows[key].split(" | ")[2])
        assert ratio > 0 and "200:" in rows[key]
    assert (tmp_path / "summary.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
