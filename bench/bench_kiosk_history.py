"""What keeping the kiosk's issuance history in the store costs an issued document (issue 13,
CVS-18 item 3). Not a test.

Two 証明発行サーバ of one municipality, the same resident, signer and document (a 住民票, PDF
rendered and signed as at a kiosk): one keeps its history in a SQLite store
(store.StoreKioskHistory: a connection of its own per document, the history row and its audit
record in one transaction, the chain sealed at commit, as every home-backed server does), the
other in memory (records.MemoryKioskHistory, the stacks without a store). They take alternating
turns of `docs` documents for `rounds` rounds, so both see the same machine; the figure is the
median of the per-round ratios of ms per document, stored / in memory (expected: a little over
1, a write per issued document; nothing is written per challenge). Beside it: the store write
alone (ms per record) on the same store.

    python -m bench.bench_kiosk_history [--rounds 5] [--docs 20]
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mynaemu.issuance.clock import JST

RESULTS = Path(__file__).resolve().parent / "results" / "kiosk_history.md"
AT = dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)
SERIAL = 1001


def bench(rounds: int, docs: int) -> dict:
    from mynaemu.issuance.kiosk.keyfiles import load_or_create_signer
    from mynaemu.issuance.kiosk.municipality import MunicipalityServer
    from mynaemu.issuance.kiosk.records import MemoryKioskHistory
    from mynaemu.issuance.kiosk.residents import MemoryResidentDirectory, synthesize_resident
    from mynaemu.issuance.personas import synthetic_identity
    from mynaemu.issuance.store import DB_NAME, KioskIssue, Store, StoreKioskHistory

    out = {"stored": [], "memory": [], "ratios": [], "record": []}
    with tempfile.TemporaryDirectory(prefix="mynaemu-bench-") as tmp:
        home = Path(tmp)
        Store.open(home).close()
        location = home / DB_NAME
        signer = load_or_create_signer(home, "13221")
        directory = MemoryResidentDirectory()
        identity = synthetic_identity(random.Random(7), age=40, on=AT.date())
        directory.add(synthesize_resident(identity, on=AT.date()), auth_serials=[SERIAL])
        stored_history = StoreKioskHistory(location)
        servers = {"stored": MunicipalityServer("13221", signer, directory, history=stored_history),
                   "memory": MunicipalityServer("13221", signer, directory, history=MemoryKioskHistory())}
        for side in servers.values():   # warm up: fonts, keys, the store's first connection
            side.produce_for_certificate(SERIAL, "juminhyo", with_number=False, at=AT)
        for r in range(rounds):
            per_doc = {}
            for name in (("stored", "memory") if r % 2 == 0 else ("memory", "stored")):
                t0 = time.perf_counter()
                for _ in range(docs):
                    servers[name].produce_for_certificate(SERIAL, "juminhyo", with_number=False, at=AT)
                per_doc[name] = (time.perf_counter() - t0) / docs
                out[name].append(per_doc[name])
            out["ratios"].append(per_doc["stored"] / per_doc["memory"])
            t0 = time.perf_counter()
            for i in range(docs):
                stored_history.record(KioskIssue(at=AT, municipality_code="13221", document="juminhyo",
                                                 method="shin", serial=f"B{r:03d}{i:012d}", verification_code="V",
                                                 fee=200, with_number=False, kiosk_id="TEST-KIOSK-BENCH"))
            out["record"].append((time.perf_counter() - t0) / docs)
        out["rows"] = len(stored_history.entries())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--docs", type=int, default=20, help="documents per turn (default 20)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.docs < 1:
        parser.error("--rounds and --docs must be at least 1")
    m = bench(args.rounds, args.docs)
    ms = lambda s: f"{s * 1000:.2f} ms"  # noqa: E731
    ratio = statistics.median(m["ratios"])
    lines = [
        "# Kiosk issuance history in the store (issue 13)",
        "",
        f"{args.rounds} rounds × {args.docs} 住民票 per side, alternating; SQLite store.",
        "",
        "| measure | median |",
        "|---|---:|",
        f"| document issued, history in the store (row + audit record, one transaction) | {ms(statistics.median(m['stored']))} |",
        f"| document issued, history in memory | {ms(statistics.median(m['memory']))} |",
        f"| **ratio stored / in memory** (per-round ratios {', '.join(f'{x:.3f}' for x in m['ratios'])}) | {ratio:.3f} |",
        f"| the store write alone (short connection, row, audit record, seal, commit) | {ms(statistics.median(m['record']))} |",
        "",
        f"History rows at the end: {m['rows']}.",
    ]
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
