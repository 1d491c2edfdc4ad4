"""The store at scale: many concurrent writers on shared cards, and batch issuance rates, on
PostgreSQL and SQLite, with every result checked for lost updates and illegal states.

Writers (`run_scale`): W processes each run N workflow operations on a shared set of persons'
cards, all at once: 一時停止 (suspend) and 解除 (resume) about 45 % each, 異動 (move: a new
signing certificate and a re-personalised image) 5 %, status reads 3 %, and 再発行 chains
(reissue → generate → deliver of the new card, three operations) 2 %. Operations pick a random
person's newest card without looking at its state, so many are refused (suspending a suspended
card, resuming an active one, a stale id after a reissue): refusals are part of the test.

Checks (`verify`), all from the store after the writers end:
- lost updates: for every (operation, outcome) the audit holds exactly as many records as the
  writers saw succeed or be refused; every successful state-changing audit record owns exactly
  the card transitions its operation makes (suspend: one active→suspended, …);
- illegal states: every card's event chain is connected (each from_state is the previous
  to_state, the last is the card's state) and every transition is legal under the workflow
  (STATE-1) and made by an operation allowed to make it; every certificate's events follow
  issued → hold ↔ released → revoked (final, STATE-2) and end in its stored status; a suspended
  card's live certificates are all on hold and an active card's none (STATE-3(3)); at most one
  live card per person (STATE-3(8)).

Issuance (`issue_rate`): cards/s of `issue generate --workers N`'s batch runner (claims, keys,
certificates, personalisation, 交付通知書) for 1 and 2 workers on both backends. Keys come from
a pre-generated pool (store-bound: the figure excludes RSA key generation) or are generated
fresh (KEYS_PER_CARD RSA-2048 keys a card, the real cost); the table says which.

The long run (a private PostgreSQL is started and stopped by the bench itself):

    python -m bench.bench_store_scale --writers 16 --ops 10000

Results go to stdout and bench/results/store_scale.md.
"""
from __future__ import annotations

import argparse
import collections
import datetime as _dt
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

from mynaemu.issuance.clock import JST

APPLY_AT = _dt.datetime(2026, 4, 1, 9, tzinfo=JST)
GENERATE_AT = _dt.datetime(2026, 4, 10, 10, tzinfo=JST)
DELIVER_AT = _dt.datetime(2026, 4, 20, 10, tzinfo=JST)
# Every writer operation happens at this one instant: the workflow refuses to move a card's clock
# backwards, and writers on different processes cannot agree on a finer clock than "same time".
OPS_AT = _dt.datetime(2026, 6, 1, 10, tzinfo=JST)
PINS = {"auth": "1234", "kenhojo": "5678", "sign": "ABC123"}

LIVE = ("applied", "received", "issued", "awaiting_delivery", "active", "suspended")
# STATE-1 transitions and which operations (card_events.operation, by prefix) may make them
LEGAL = {
    (None, "applied"): ("first", "renewal", "reissue"),
    ("applied", "received"): ("receive",),
    ("received", "issued"): ("generate",),
    ("issued", "awaiting_delivery"): ("notice",),
    ("awaiting_delivery", "active"): ("deliver",),
    ("active", "suspended"): ("suspend",),
    ("suspended", "active"): ("resume",),
    ("active", "abolished"): ("abolish", "reissue (", "replaced by "),
    ("suspended", "abolished"): ("abolish", "reissue (", "replaced by "),
    ("abolished", "collected"): ("collect", "handed in for "),
    ("revoked", "collected"): ("collect",),
    ("collected", "destroyed"): ("destroy",),
    **{(state, "revoked"): ("revoke (",) for state in LIVE},
}
# what one successful audited operation does to card states (checked per audit record)
OP_TRANSITIONS = {
    "suspend": [("active", "suspended")],
    "resume": [("suspended", "active")],
    "move": [],
    "generate": [("applied", "received"), ("received", "issued"), ("issued", "awaiting_delivery")],
    "deliver": [("awaiting_delivery", "active")],
}
CERT_NEXT = {"good": {"hold": "hold", "revoked": "revoked"}, "hold": {"released": "good", "revoked": "revoked"}}


# ---------------------------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------------------------

def make_key_pool(count: int) -> list[bytes]:
    from mynaemu.issuance.pki.keys import generate_rsa_key, private_key_pem

    return [private_key_pem(generate_rsa_key(2048)) for _ in range(count)]


def pool_factory(pems: list[bytes], seed: int = 0):
    from cryptography.hazmat.primitives import serialization

    keys = [serialization.load_pem_private_key(p, None, unsafe_skip_rsa_key_validation=True) for p in pems]
    rng = random.Random(seed)
    return lambda: keys[rng.randrange(len(keys))]


def person_fields(i: int) -> dict:
    return dict(name=f"規模\u3000{i:05d}", birth=_dt.date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
                sex="1" if i % 2 else "2", address=f"東京都清瀬市規模町{i}番")


def setup_cards(location, persons: int, key_pool: list[bytes]) -> list[int]:
    """`persons` people, each with one active card (applied, generated, delivered). Returns the person ids."""
    from mynaemu.issuance.store import Store
    from mynaemu.issuance.lifecycle.workflow import Workflow

    with Store(location) as store:
        wf = Workflow(store, operator="setup", terminal="setup", key_factory=pool_factory(key_pool))
        out = []
        for i in range(persons):
            app_id = wf.apply(at=APPLY_AT, **person_fields(i))
            wf.generate(app_id, at=GENERATE_AT)
            wf.deliver(app_id, at=DELIVER_AT, pins=PINS, identity_check="運転免許証")
            out.append(store.card(app_id)["person_id"])
        return out


def prepare_applications(location, count: int) -> list[str]:
    from mynaemu.issuance.store import Store
    from mynaemu.issuance.lifecycle.workflow import Workflow

    with Store(location) as store:
        wf = Workflow(store, operator="setup", terminal="setup")
        return [wf.apply(at=APPLY_AT, **person_fields(i)) for i in range(count)]


# ---------------------------------------------------------------------------------------------
# the writers
# ---------------------------------------------------------------------------------------------

def _newest_card(store, person_id: int) -> str:
    return store.conn.execute("SELECT application_id FROM cards WHERE person_id = ? ORDER BY seq DESC LIMIT 1",
                              (person_id,)).fetchone()[0]


def writer(location, index: int, ops: int, seed: int, persons: list[int], key_pool: list[bytes], barrier, results):
    """One writer process: `ops` operations; reports Counter{(operation, outcome): n} and seconds."""
    from mynaemu.issuance.store import Store, StoreBusy
    from mynaemu.issuance.lifecycle.workflow import Workflow, WorkflowError

    rng = random.Random(seed * 1000 + index)
    counts: collections.Counter = collections.Counter()
    unexpected: list[str] = []
    with Store(location) as store:
        wf = Workflow(store, operator=f"writer-{index}", terminal=f"scale-{index}",
                      key_factory=pool_factory(key_pool, seed + index))
        wf.pki
        barrier.wait()
        start = time.perf_counter()
        done = 0
        moves = 0

        def attempt(operation, call):
            try:
                value = call()
            except WorkflowError:
                counts[(operation, "refused")] += 1
                return None
            except StoreBusy as exc:
                counts[(operation, "busy")] += 1
                unexpected.append(f"{operation}: {exc}")
                return None
            except Exception as exc:  # noqa: BLE001 - every other failure is an anomaly to report
                counts[(operation, "exception")] += 1
                unexpected.append(f"{operation}: {type(exc).__name__}: {exc}")
                return None
            counts[(operation, "ok")] += 1
            return value

        while done < ops:
            person = persons[rng.randrange(len(persons))]
            app_id = _newest_card(store, person)
            r = rng.random()
            if r < 0.45:
                attempt("suspend", lambda: wf.suspend(app_id, at=OPS_AT))
                done += 1
            elif r < 0.90:
                attempt("resume", lambda: wf.resume(app_id, at=OPS_AT))
                done += 1
            elif r < 0.95:
                moves += 1
                address = f"東京都清瀬市移転町{index}-{moves}"
                attempt("move", lambda: wf.move(app_id, at=OPS_AT, address=address))
                done += 1
            elif r < 0.98:
                wf.status(app_id, at=OPS_AT)        # a read: audited (SEC-8), changes no card
                counts[("status", "ok")] += 1
                done += 1
            else:
                new_id = attempt("reissue", lambda: wf.reissue(app_id, at=OPS_AT, reason="lost"))
                done += 1
                if new_id is not None:
                    attempt("generate", lambda: wf.generate(new_id, at=OPS_AT))
                    attempt("deliver", lambda: wf.deliver(new_id, at=OPS_AT, pins=PINS, identity_check="x"))
                    done += 2
        elapsed = time.perf_counter() - start
        results.put((index, dict(counts), elapsed, unexpected, store.conflicts))


def run_scale(location, *, writers: int, ops: int, persons: int, seed: int = 1, key_pool=None) -> dict:
    """Set up `persons` active cards, run the writers, verify. Returns the figures and anomalies."""
    key_pool = key_pool or make_key_pool(12)
    person_ids = setup_cards(location, persons, key_pool)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(writers + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=writer, args=(location, i, ops, seed, person_ids, key_pool, barrier, results))
             for i in range(writers)]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=600)
    start = time.perf_counter()
    reports = []
    for _ in procs:
        reports.append(results.get(timeout=max(600, ops * 2)))
    wall = time.perf_counter() - start
    for proc in procs:
        proc.join(60)
    counts: collections.Counter = collections.Counter()
    unexpected, conflicts = [], 0
    for _, c, _, u, k in reports:
        counts.update(c)
        unexpected += u
        conflicts += k
    anomalies = verify(location, counts)
    anomalies += [f"writer error: {u}" for u in unexpected]
    anomalies += [f"writer {p.pid} exit code {p.exitcode}" for p in procs if p.exitcode != 0]
    writes = sum(n for (op, outcome), n in counts.items() if outcome in ("ok", "refused"))
    return {"writers": writers, "ops_per_writer": ops, "persons": persons, "wall_s": wall,
            "operations": sum(counts.values()), "audited_writes": writes,
            "ok": sum(n for (_, o), n in counts.items() if o == "ok"),
            "refused": sum(n for (_, o), n in counts.items() if o == "refused"),
            "ops_per_s": sum(counts.values()) / wall, "conflicts_retried": conflicts,
            "counts": {f"{op}/{outcome}": n for (op, outcome), n in sorted(counts.items())},
            "anomalies": anomalies}


# ---------------------------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------------------------

def verify(location, counts) -> list[str]:
    """Every lost update or illegal state found in the store (an empty list: none)."""
    from mynaemu.issuance.store import Store

    problems: list[str] = []
    with Store(location) as store:
        q = lambda sql, *p: store.conn.execute(sql, p).fetchall()  # noqa: E731
        # 1. the audit holds exactly what the writers saw (setup rows have operator 'setup')
        audited = collections.Counter()
        for op, outcome, n in q("SELECT operation, outcome, count(*) FROM audit WHERE operator LIKE 'writer-%' "
                                "GROUP BY operation, outcome"):
            audited[(op, outcome)] = n
        seen = collections.Counter({k: v for k, v in counts.items() if k[1] in ("ok", "refused")})
        for key in sorted(set(audited) | set(seen)):
            if audited[key] != seen[key]:
                problems.append(f"audit {key[0]}/{key[1]}: {audited[key]} records, writers saw {seen[key]}")
        # 2. each successful audited operation made exactly its own transitions
        by_audit = collections.defaultdict(list)
        for audit_id, frm, to in q("SELECT audit_id, from_state, to_state FROM card_events "
                                   "WHERE audit_id IS NOT NULL ORDER BY id"):
            by_audit[audit_id].append((frm, to))
        for audit_id, op, target in q("SELECT id, operation, target FROM audit WHERE outcome = 'ok' "
                                      "AND operator LIKE 'writer-%' ORDER BY id"):
            got = by_audit.get(audit_id, [])
            if op in OP_TRANSITIONS:
                want = OP_TRANSITIONS[op]
                if op == "generate" and got == want[1:]:
                    continue  # 受付 already done
                if got != want:
                    problems.append(f"audit {audit_id} {op} {target}: transitions {got}, expected {want}")
            elif op == "reissue":
                # the old card abolished and the new application created, nothing else
                if len(got) != 2 or (None, "applied") not in got or not any(
                        frm in ("active", "suspended") and to == "abolished" for frm, to in got):
                    problems.append(f"audit {audit_id} reissue {target}: transitions {got}")
        refused_events = q("SELECT count(*) FROM card_events e JOIN audit a ON a.id = e.audit_id "
                           "WHERE a.outcome <> 'ok'")[0][0]
        if refused_events:
            problems.append(f"{refused_events} card transitions belong to refused operations")
        # 3. every card's chain is connected, legal, and ends in its state
        chains = collections.defaultdict(list)
        for app_id, frm, to, op in q("SELECT application_id, from_state, to_state, operation FROM card_events "
                                     "ORDER BY id"):
            chains[app_id].append((frm, to, op))
        states = dict(q("SELECT application_id, state FROM cards"))
        for app_id, state in states.items():
            chain = chains.get(app_id, [])
            previous = None
            for frm, to, op in chain:
                if frm != previous:
                    problems.append(f"card {app_id}: transition {frm}→{to} ({op}) after {previous} (lost update)")
                allowed = LEGAL.get((frm, to))
                if allowed is None or not op.startswith(allowed):
                    problems.append(f"card {app_id}: illegal transition {frm}→{to} by {op!r}")
                previous = to
            if previous != state:
                problems.append(f"card {app_id}: state {state} but its last transition ends in {previous}")
        # 4. certificates: issued → hold ↔ released → revoked, ending in the stored status
        events = collections.defaultdict(list)
        for cert_id, event in q("SELECT cert_id, event FROM cert_events ORDER BY id"):
            events[cert_id].append(event)
        live_by_card = collections.defaultdict(list)
        for cert_id, app_id, kind, status in q("SELECT id, application_id, ca_kind, status FROM certificates"):
            seq = events.get(cert_id, [])
            derived = None
            for ev in seq:
                if derived is None:
                    derived = "good" if ev == "issued" else None
                    if derived is None:
                        problems.append(f"certificate {cert_id}: first event {ev}, not issued")
                        break
                    continue
                nxt = CERT_NEXT.get(derived, {}).get(ev)
                if nxt is None:
                    problems.append(f"certificate {cert_id}: {ev} while {derived} (events {seq})")
                    break
                derived = nxt
            if derived != status:
                problems.append(f"certificate {cert_id}: status {status}, its events give {derived}")
            if status != "revoked":
                live_by_card[app_id].append((kind, status))
        for app_id, state in states.items():
            live = live_by_card.get(app_id, [])
            kinds = [k for k, _ in live]
            if len(kinds) != len(set(kinds)):
                problems.append(f"card {app_id}: {len(kinds)} live certificates of kinds {kinds}")
            if state == "suspended" and any(s != "hold" for _, s in live):
                problems.append(f"card {app_id}: suspended with a certificate not on hold (STATE-3(3))")
            if state == "active" and any(s == "hold" for _, s in live):
                problems.append(f"card {app_id}: active with a certificate on hold (STATE-3(3))")
            if state not in ("active", "suspended", "awaiting_delivery", "issued") and live:
                problems.append(f"card {app_id}: {state} with live certificates {live}")
        # 5. STATE-3(8): at most one live card per person
        marks = ", ".join("?" for _ in LIVE)
        for person, n in q(f"SELECT person_id, count(*) FROM cards WHERE state IN ({marks}) GROUP BY person_id "
                           "HAVING count(*) > 1", *LIVE):
            problems.append(f"person {person}: {n} live cards (STATE-3(8))")
    return problems


# ---------------------------------------------------------------------------------------------
# issuance rates
# ---------------------------------------------------------------------------------------------

def issue_rate(location, *, cards: int, workers: int, key_pool: list[bytes] | None) -> dict:
    """`cards` waiting applications generated by the batch runner with `workers` processes."""
    from mynaemu.issuance.lifecycle.batch import run_batch
    from mynaemu.issuance.store import Store

    prepare_applications(location, cards)
    result = run_batch(location, workers=workers, at=GENERATE_AT, operator="bench", terminal="bench",
                       key_pool=key_pool)
    with Store(location) as store:
        done = len(store.application_ids(("awaiting_delivery",)))
        certs = store.conn.execute("SELECT count(*), count(DISTINCT application_id) FROM certificates "
                                   "WHERE ca_kind = 'auth'").fetchone()
    problems = []
    if done != cards or result.failed or result.worker_errors:
        problems.append(f"{done} of {cards} generated; failed {result.failed[:3]}; {result.worker_errors[:3]}")
    if certs[0] != certs[1]:
        problems.append(f"{certs[0]} auth certificates for {certs[1]} cards (a card generated twice)")
    return {"workers": workers, "cards": done, "seconds": result.work_seconds,
            "cards_per_s": done / result.work_seconds, "skipped": len(result.skipped), "problems": problems}


# ---------------------------------------------------------------------------------------------
# locations
# ---------------------------------------------------------------------------------------------

class Locations:
    """Fresh stores: a new schema on the PostgreSQL server (started here unless --db), or a new
    SQLite file in a temporary directory."""

    def __init__(self, db: str | None):
        self.db = db
        self.server = None
        self.tmp = tempfile.TemporaryDirectory(prefix="mynaemu-scale-")
        self.n = 0

    def pg(self) -> str:
        from mynaemu.tools.harness import pgserver

        if self.db is None:
            self.server = pgserver.PgServer(max_connections=200)
            self.db = self.server.start()
        return pgserver.fresh_schema_url(self.db)

    def sqlite(self) -> Path:
        from mynaemu.issuance.store import DB_NAME

        self.n += 1
        folder = Path(self.tmp.name) / f"s{self.n}"
        folder.mkdir()
        return folder / DB_NAME

    def new(self, backend: str):
        return self.pg() if backend == "postgresql" else self.sqlite()

    def close(self):
        if self.server is not None:
            self.server.stop()
        self.tmp.cleanup()


def main(argv=None) -> int:
    from mynaemu.issuance.pki.ca import default_test_pki
    from mynaemu.issuance.personalise import KEYS_PER_CARD

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=16, help="writer processes (0: issuance rates only)")
    parser.add_argument("--ops", type=int, default=10000, help="operations per writer")
    parser.add_argument("--persons", type=int, default=64, help="shared cards (one person each)")
    parser.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"], choices=["postgresql", "sqlite"],
                        help="where the writers run (issuance rates are measured on both)")
    parser.add_argument("--issue-cards", type=int, default=256, help="cards per issuance run with the key pool")
    parser.add_argument("--fresh-key-cards", type=int, default=24, help="cards per issuance run with fresh keys (0: skip)")
    parser.add_argument("--db", default=None, help="an existing PostgreSQL URL (default: start a private server)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "store_scale.md")
    args = parser.parse_args(argv)
    if min(args.ops, args.persons, args.issue_cards) < 1 or min(args.writers, args.fresh_key_cards) < 0:
        parser.error("counts must be positive")

    default_test_pki()
    key_pool = make_key_pool(24)
    places = Locations(args.db)
    load = os.getloadavg()[0]
    scale_rows, rate_rows, anomalies = [], [], []
    try:
        for backend in args.backends if args.writers else ():
            print(f"{backend}: {args.writers} writers × {args.ops} operations on {args.persons} cards …",
                  file=sys.stderr, flush=True)
            r = run_scale(places.new(backend), writers=args.writers, ops=args.ops, persons=args.persons,
                          seed=args.seed, key_pool=key_pool)
            r["backend"] = backend
            scale_rows.append(r)
            anomalies += [f"{backend}: {a}" for a in r["anomalies"]]
            print(f"  {r['operations']} operations in {r['wall_s']:.1f} s = {r['ops_per_s']:.0f}/s, "
                  f"{len(r['anomalies'])} anomalies", file=sys.stderr, flush=True)
        for pool_name, pool, cards in (("pre-generated pool", key_pool, args.issue_cards),
                                       ("fresh RSA-2048 keys", None, args.fresh_key_cards)):
            if cards == 0:
                continue
            for backend in ("postgresql", "sqlite"):
                for workers in (1, 2):
                    r = issue_rate(places.new(backend), cards=cards, workers=workers, key_pool=pool)
                    r.update(backend=backend, keys=pool_name)
                    rate_rows.append(r)
                    anomalies += [f"issue {backend} ×{workers}: {p}" for p in r["problems"]]
                    print(f"  issue {backend} {workers} worker(s), {pool_name}: {r['cards_per_s']:.2f} cards/s",
                          file=sys.stderr, flush=True)
    finally:
        places.close()

    lines = ["| backend | writers × ops | cards | operations | ok | refused | wall s | ops/s | deadlocks retried "
             "| anomalies |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in scale_rows:
        lines.append(f"| {r['backend']} | {r['writers']} × {r['ops_per_writer']} | {r['persons']} | {r['operations']} "
                     f"| {r['ok']} | {r['refused']} | {r['wall_s']:.1f} | {r['ops_per_s']:.0f} "
                     f"| {r['conflicts_retried']} | {len(r['anomalies'])} |")
    lines += ["", "| keys | backend | workers | cards | s | cards/s | vs 1 worker |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rate_rows:
        one = next(x for x in rate_rows if x["keys"] == r["keys"] and x["backend"] == r["backend"] and x["workers"] == 1)
        lines.append(f"| {r['keys']} | {r['backend']} | {r['workers']} | {r['cards']} | {r['seconds']:.2f} "
                     f"| {r['cards_per_s']:.2f} | {r['cards_per_s'] / one['cards_per_s']:.2f}× |")
    print("\n".join(lines))
    for r in scale_rows:
        print(f"{r['backend']} operation counts: {r['counts']}")
    print("anomalies: " + ("none" if not anomalies else f"{len(anomalies)}"))
    for a in anomalies[:50]:
        print("  " + a)

    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = ["# Store at scale", "",
           f"Run {when} on {platform.machine()} with {os.cpu_count()} CPUs, Python {platform.python_version()}; "
           f"`python -m bench.bench_store_scale --writers {args.writers} --ops {args.ops} --persons {args.persons} "
           f"--backends {' '.join(args.backends)}`. Load average before the run: {load:.2f}.", "",
           "Writers: processes running workflow operations at once on shared cards (suspend/resume 45 % each, "
           "move 5 %, status reads 3 %, reissue → generate → deliver chains 2 %; many refused by design). "
           "Checked afterwards: audit counts equal what the writers saw, every successful operation owns exactly "
           "its transitions, every card's transition chain is connected and legal (STATE-1), certificate "
           "histories are legal (STATE-2), STATE-3(3) and STATE-3(8) hold.", "", *lines[:2 + len(scale_rows)], "",
           f"Issuance: the batch runner of `mynaemu issue generate --workers N` (claims, {KEYS_PER_CARD} keys a card, "
           "2 certificates, personalisation, 交付通知書), timed from the first claim to the last card (worker "
           "start-up and the TEST CA load excluded). \"pre-generated pool\": keys drawn from a pool made "
           "before the run (store-bound: no RSA key generation in the figure); \"fresh RSA-2048 keys\": generated "
           "per card as in production. PostgreSQL: private server, synchronous_commit=off; SQLite: WAL, "
           "synchronous=NORMAL (the same durability promise).", "", *lines[3 + len(scale_rows):], "",
           f"Anomalies: {'none' if not anomalies else len(anomalies)}", ""]
    doc += [f"- {a}" for a in anomalies[:50]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(doc) + "\n", encoding="utf-8")
    print(f"written {args.out}", file=sys.stderr)
    return 1 if anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
