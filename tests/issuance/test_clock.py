"""issuance/clock.py: the one home of Japan time, the wall clock and the settable clock."""
from __future__ import annotations

import ast
import datetime as dt
import pathlib
import time

import pytest

from mynaemu.issuance import clock, policy
from mynaemu.issuance.pki import ocsp
from mynaemu.tools.cli import types as cli_types

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Files allowed to define their own Japan time or wall clock: none (the kiosk's moved to
# issuance/clock.py in issue 14).
PENDING = set()


def test_jst_is_utc_plus_9_named_jst_and_one_object():
    assert clock.JST.utcoffset(None) == dt.timedelta(hours=9) and clock.JST.tzname(None) == "JST"
    assert policy.JST is clock.JST and cli_types.JST is clock.JST


def test_now_is_jst_to_the_second_and_utc_now_is_utc():
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    jst, utc = clock.now(), clock.utc_now()
    after = dt.datetime.now(dt.timezone.utc)
    assert jst.tzinfo is clock.JST and jst.microsecond == 0 and before <= jst <= after
    assert utc.utcoffset() == dt.timedelta(0) and before <= utc <= after
    assert ocsp.utc_now is clock.utc_now


def test_settable_clock_starts_where_told_runs_on_and_advances():
    start = dt.datetime(2026, 6, 1, 10, tzinfo=clock.JST)
    tick = clock.SettableClock(start)
    first = tick()
    assert start <= first < start + dt.timedelta(seconds=5)
    time.sleep(0.05)
    assert tick() > first
    tick.advance(dt.timedelta(days=1))
    assert tick() - first >= dt.timedelta(days=1)
    tick.advance(60)
    assert tick() - first >= dt.timedelta(days=1, seconds=60)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.SettableClock(dt.datetime(2026, 6, 1))


def _defines_time(path: pathlib.Path) -> list[str]:
    """Where a module makes a UTC+9 timezone or defines a utc_now of its own."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name == "utc_now":
            hits.append("def utc_now")
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "timedelta"
              and any(k.arg == "hours" and getattr(k.value, "value", None) == 9 for k in node.keywords)):
            hits.append("timedelta(hours=9)")
    return hits


def test_japan_time_and_the_wall_clock_are_defined_once():
    found = {}
    for top in ("card", "issuance", "tools", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            hits = _defines_time(path)
            if hits and rel not in PENDING:
                found[rel] = hits
    # policy.py keeps the one definition (it imports nothing outside the standard library) and
    # clock.py hands it out with the clocks
    assert found == {"issuance/policy.py": ["timedelta(hours=9)"], "issuance/clock.py": ["def utc_now"]}
