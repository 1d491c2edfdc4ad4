"""The audit trail at scale (issue 13): does appending slow the workflow as the trail grows, and how
fast does `issue audit --verify` walk the chain? Not a test.

Two SQLite stores, each with one delivered card: one whose trail holds ~1,000 records, one with
~1,000,000 (filled in one transaction, sealed into the chain at its commit like any other). The
same suspend + resume cycle (two steps, two audit records, two seals) runs on both, in
alternating turns so both see the same machine; the figure is the median of the per-round
ratios of ms per cycle (target ≤ 1.2). Then `verify_audit_chain` walks the big trail:
records/s.

    python -m bench.bench_audit [--records 1000000] [--rounds 5] [--cycles 20]
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mynaemu.issuance.lifecycle.workflow import Workflow
from mynaemu.issuance.store import Store

RESULTS = Path(__file__).resolve().parent / "results" / "audit.md"
PINS = {"auth": "1234", "sign": "ABC123", "kenhojo": "5678"}
PERSON = dict(name="監査\u3000太郎", birth=dt.date(1980, 1, 15), sex="1", address="東京都清瀬市試験町１丁目")


def make_store(home: Path, records: int):
    store = Store.open(home)
    wf = Workflow(store, operator="bench", terminal="bench")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    app_id = wf.apply(at=now - dt.timedelta(days=10), **PERSON)
    wf.generate(app_id, at=now - dt.timedelta(days=9))
    wf.deliver(app_id, at=now - dt.timedelta(days=8), pins=PINS, identity_check="運転免許証")
    have = store.conn.execute("SELECT count(*) FROM audit").fetchone()[0]
    row = ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00", "filler", "bench", "status", None, None,
           "ok", None)
    started = time.perf_counter()
    with store.transaction() as conn:        # sealed into the chain at this commit
        conn.executemany("INSERT INTO audit (at, recorded_at, operator, terminal, operation, target, reason,"
                         " outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [row] * max(0, records - have))
    fill_s = time.perf_counter() - started
    return store, wf, app_id, now - dt.timedelta(days=7), fill_s


def cycles(wf, app_id, at, n) -> tuple[float, dt.datetime]:
    started = time.perf_counter()
    for _ in range(n):
        wf.suspend(app_id, at=at)
        at += dt.timedelta(seconds=1)
        wf.resume(app_id, at=at, identity_check="運転免許証")
        at += dt.timedelta(seconds=1)
    return (time.perf_counter() - started) * 1000 / n, at


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_audit", description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cycles", type=int, default=20)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        small, wf_s, id_s, at_s, _ = make_store(Path(tmp) / "small", args.small)
        big, wf_b, id_b, at_b, fill_s = make_store(Path(tmp) / "big", args.records)
        ratios, ms_small, ms_big = [], [], []
        for r in range(args.rounds):
            order = [("small", wf_s, id_s), ("big", wf_b, id_b)] if r % 2 == 0 else [("big", wf_b, id_b), ("small", wf_s, id_s)]
            got = {}
            for name, wf, app_id in order:
                if name == "small":
                    got[name], at_s = cycles(wf, app_id, at_s, args.cycles)
                else:
                    got[name], at_b = cycles(wf, app_id, at_b, args.cycles)
            ms_small.append(got["small"])
            ms_big.append(got["big"])
            ratios.append(got["big"] / got["small"])
            print(f"round {r + 1}: {got['small']:.2f} ms / cycle at {args.small:,} records, "
                  f"{got['big']:.2f} ms at {args.records:,}: {ratios[-1]:.2f}", file=sys.stderr)
        n_big = big.conn.execute("SELECT count(*) FROM audit").fetchone()[0]
        started = time.perf_counter()
        checked, problem = big.verify_audit_chain()
        verify_s = time.perf_counter() - started
        small.close()
        big.close()
    if problem is not None or checked != n_big:
        print(f"bench_audit: the chain did not verify: {problem}", file=sys.stderr)
        return 1
    ratio = statistics.median(ratios)
    text = f"""# The audit trail at scale (bench/bench_audit.py)

Suspend + resume (two steps, two sealed audit records) on a store whose trail holds
{args.small:,} records and on one with {n_big:,}; {args.rounds} alternating rounds × {args.cycles} cycles.

| trail | ms per suspend + resume (median) |
|---:|---:|
| {args.small:,} records | {statistics.median(ms_small):.2f} |
| {n_big:,} records | {statistics.median(ms_big):.2f} |

- ratio big / small: **{ratio:.2f}** (rounds {', '.join(f'{x:.2f}' for x in ratios)}; target ≤ 1.2)
- `verify_audit_chain` on {checked:,} records: {verify_s:.1f} s, **{checked / verify_s:,.0f} records/s**
- filling the big trail (one transaction, sealed at its commit): {fill_s:.1f} s
"""
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
