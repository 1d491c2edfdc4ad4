"""Batch issuance: N worker processes claim waiting applications (申請/受付) one at a time and
run the workflow's `generate` on each (鍵ペア生成 + 証明書発行 + personalisation + 交付通知書,
rules.md FLOW-1 steps 5-8).

Claims (store.claim_next) are leases kept in the store: on PostgreSQL a worker takes the oldest
free card with ``FOR UPDATE SKIP LOCKED``, so workers never queue behind each other; on SQLite the
single writer hands them out in turn. Each worker makes the card's keys outside any transaction
(seconds of CPU must not hold a lock) and then generates under the card's row lock.

Crash safety (kill -9 of a worker or of the whole batch): the claim outlives its worker, and a
later batch frees it at once when the owner is a dead process of this machine
(store.release_dead_claims), or else when its lease runs out. A card is never generated twice:
`generate` refuses any state but 申請/受付 under the card's lock, so a worker whose lease was
taken over finds the card done and moves on (counted as "skipped"); unique constraints on card
serials, 交付通知書 ids and (CA, serial) back this up. A worker also stops when its parent batch
process disappears, so a killed batch does not go on in the background.

A card the workflow refuses (e.g. FLOW-3: 代替文字 not confirmed) is marked refused and not
tried again by this batch; the next batch tries it again.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import multiprocessing
import os
import queue as _queue
import time
from typing import Callable

from mynaemu.issuance.store import QUEUE_STATES, Store, StoreBusy, StoreError, claim_owner_id, lease_stamp

__all__ = ["DEFAULT_LEASE_S", "BatchResult", "run_batch", "work"]

# Long enough for a card's nine RSA-2048 keys on a loaded machine, short enough that a claim of
# a worker on another machine that died is not stuck for long (same-machine claims are freed at once).
DEFAULT_LEASE_S = 120.0


@dataclasses.dataclass
class BatchResult:
    generated: list          # one dict per card generated (id, notice_id, card_expires, serials, sign)
    failed: list             # {"id", "error", "kind"}: kind an issuance.errors.ErrorKind value
    skipped: list            # ids another worker finished first (lease overlap)
    reclaimed: list          # ids freed from dead workers of this machine before the batch
    workers: int
    seconds: float
    worker_errors: list = dataclasses.field(default_factory=list)   # a worker process that failed
    # from the first worker's first claim to the last worker's end (process start-up and the
    # TEST CA load excluded): what a throughput figure should divide by
    work_seconds: float = 0.0
    spans: list = dataclasses.field(default_factory=list)


def _result_doc(r) -> dict:
    return {"id": r.id, "notice_id": r.notice_id, "card_expires": r.card_expires.isoformat(),
            "auth_serial": f"{r.auth_serial:X}", "sign_serial": f"{r.sign_serial:X}" if r.sign_serial else None,
            "sign": r.sign_decision}


def work(store: Store, wf, *, owner: str, batch_started: str, at: _dt.datetime, lease_s: float,
         emit: Callable[[str, object], None], limit: int | None = None,
         keep_going: Callable[[], bool] = lambda: True) -> int:
    """One worker's loop over the store: claim, generate, repeat until nothing is left (or
    `limit` cards, or keep_going() is false). emit(kind, payload) gets every outcome."""
    from mynaemu.issuance.errors import ErrorKind, WorkflowError

    done = 0
    while (limit is None or done < limit) and keep_going():
        app_id = store.claim_next(owner, lease_s=lease_s, batch_started=batch_started)
        if app_id is None:
            break
        done += 1
        try:
            emit("generated", _result_doc(wf.generate(app_id, at=at)))
        except WorkflowError as exc:
            card = store.card(app_id)
            if card is not None and card["state"] not in QUEUE_STATES:
                emit("skipped", app_id)            # another worker generated it after our lease expired
            else:
                store.mark_refused(app_id, owner)
                emit("failed", {"id": app_id, "error": str(exc).splitlines()[0], "kind": exc.kind.value})
        except StoreBusy as exc:
            # leave the claim to expire: a later worker or batch tries the card again
            emit("failed", {"id": app_id, "error": str(exc).splitlines()[0], "kind": ErrorKind.BUSY.value})
    return done


def _pool_factory(key_pool):
    """A key source cycling pre-made keys (PEM), for store-bound benchmarks and tests."""
    from cryptography.hazmat.primitives import serialization

    keys = [serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True) for pem in key_pool]
    state = {"i": 0}

    def factory():
        key = keys[state["i"] % len(keys)]
        state["i"] += 1
        return key
    return factory


def _worker_main(location, token, batch_started, at, operator, terminal, lease_s, limit, key_pool, results,
                 parent_pid):
    from mynaemu.issuance.lifecycle.workflow import Workflow

    status = ("exit", None)
    try:
        with Store(location) as store:
            wf = Workflow(store, operator=operator, terminal=terminal,
                          key_factory=_pool_factory(key_pool) if key_pool else None)
            wf.pki  # load the TEST CAs before the first claim
            began = time.monotonic()   # CLOCK_MONOTONIC: one clock for every process of the machine
            work(store, wf, owner=claim_owner_id(token), batch_started=batch_started, at=at, lease_s=lease_s,
                 emit=lambda kind, payload: results.put((kind, payload)), limit=limit,
                 keep_going=lambda: os.getppid() == parent_pid)
            results.put(("spans", (began, time.monotonic())))
    except (StoreError, OSError) as exc:
        status = ("exit", f"worker {os.getpid()}: {str(exc).splitlines()[0]}")
    results.put(status)


def run_batch(location, *, workers: int = 1, at: _dt.datetime, operator: str = "batch", terminal: str = "batch",
              lease_s: float = DEFAULT_LEASE_S, limit: int | None = None, key_pool: list[bytes] | None = None,
              progress: Callable[[str, object], None] | None = None) -> BatchResult:
    """Generate every waiting card of the store at `location` (a SQLite file or a PostgreSQL URL)
    with `workers` processes (1: in this process). `limit`: at most that many cards per worker.
    `key_pool`: PEM keys to cycle instead of generating (benchmarks of the store alone)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    from mynaemu.issuance.validate import finite_seconds

    # nan would pass a `<= 0` test and then never expire (or crash int()); inf never expires
    finite_seconds(lease_s, "lease", low=1, high=86400)
    from mynaemu.issuance.lifecycle.workflow import Workflow

    with Store(location) as store:
        reclaimed = store.release_dead_claims()
    batch_started = lease_stamp()
    out = BatchResult([], [], [], reclaimed, workers, 0.0)

    def collect(kind, payload):
        getattr(out, kind).append(payload)
        if progress is not None:
            progress(kind, payload)

    start = time.perf_counter()
    if workers == 1:
        with Store(location) as store:
            wf = Workflow(store, operator=operator, terminal=terminal,
                          key_factory=_pool_factory(key_pool) if key_pool else None)
            wf.pki
            began = time.monotonic()
            work(store, wf, owner=claim_owner_id(), batch_started=batch_started, at=at, lease_s=lease_s,
                 emit=collect, limit=limit)
            out.spans.append((began, time.monotonic()))
        out.seconds = time.perf_counter() - start
        out.work_seconds = out.spans[0][1] - out.spans[0][0]
        return out

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, daemon=False,
                         args=(location, f"w{i}", batch_started, at, operator, f"{terminal}-{i}", lease_s, limit,
                               key_pool, results, os.getpid()))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    finished = 0
    while finished < workers:
        try:
            kind, payload = results.get(timeout=1.0)
        except _queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead and all(p.exitcode is not None for p in procs):
                # every worker has ended and some never said goodbye: they crashed
                for p in dead:
                    out.worker_errors.append(f"worker {p.pid} died with exit code {p.exitcode}")
                break
            continue
        if kind == "spans":
            out.spans.append(payload)
        elif kind == "exit":
            finished += 1
            if payload:
                out.worker_errors.append(payload)
        else:
            collect(kind, payload)
    for proc in procs:
        proc.join(30)
    out.seconds = time.perf_counter() - start
    if out.spans:
        out.work_seconds = max(s[1] for s in out.spans) - min(s[0] for s in out.spans)
    return out
