"""Issuance benchmark: cards issued per second against RSA-2048 key generation, same run.

What is timed:
- key generation: `generate_rsa_key(2048)` (OpenSSL through `cryptography`, what the back office
  uses) for --keys keys, mean seconds per key;
- issuance: the workflow's `generate` step (受付 + 鍵ペア生成 + both TEST certificates +
  personalisation + 交付通知書, one BEGIN IMMEDIATE transaction per card, rules.md FLOW-1 steps
  5-8) for --cards applications in a fresh store, by 1 and by 2 worker processes sharing that
  store, each taking the next application when free (the workers meet at a barrier; the wall
  time runs from the barrier to the last card).

The workers' own key generation is timed too (the workflow's key source, wrapped), so the
key share of a card is measured in the same run rather than estimated from the stand-alone keys.
Reported: keys per card (KEYS_PER_CARD), ms per key in the run, the key-generation bound
(workers / (KEYS_PER_CARD × seconds per key) cards/s), the measured rate and their ratio (how close
issuance gets to pure key generation), and the share of the workers' time spent generating keys.
Results go to stdout as a table and to bench/results/issuance.md.

    python bench/bench_issuance.py [--cards 16] [--keys 72] [--workers 1 2]
"""
from __future__ import annotations

import argparse
import datetime as _dt
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mynaemu.issuance.clock import JST

APPLY_AT = _dt.datetime(2026, 5, 1, 9, tzinfo=JST)
GENERATE_AT = _dt.datetime(2026, 5, 2, 10, tzinfo=JST)


def time_keygen(count: int) -> list[float]:
    from mynaemu.issuance.pki.keys import generate_rsa_key

    times = []
    for _ in range(count):
        start = time.perf_counter()
        generate_rsa_key(2048)
        times.append(time.perf_counter() - start)
    return times


def prepare_store(home: Path, cards: int) -> list[str]:
    from mynaemu.issuance.store import Store
    from mynaemu.issuance.lifecycle.workflow import Workflow

    with Store.open(home) as store:
        wf = Workflow(store, operator="bench", terminal="bench")
        return [wf.apply(name=f"試験\u3000{i:04d}", birth=_dt.date(1970 + i % 40, 1 + i % 12, 1 + i % 28),
                         sex="1" if i % 2 else "2", address=f"東京都清瀬市試験町{i}番", at=APPLY_AT)
                for i in range(cards)]


def _worker(home: str, work, barrier, results) -> None:
    """Issue cards until `work` (a queue of application ids, one None per worker at the end)
    runs dry; report (start, end, cards, keygen seconds, keys)."""
    from mynaemu.issuance.store import Store
    from mynaemu.issuance.lifecycle.workflow import Workflow

    from mynaemu.issuance.pki.keys import generate_rsa_key

    keygen = {"seconds": 0.0, "keys": 0}

    def timed_key():
        # the workflow's own key source, timed: the key share is measured, not estimated
        t = time.perf_counter()
        key = generate_rsa_key(2048)
        keygen["seconds"] += time.perf_counter() - t
        keygen["keys"] += 1
        return key

    with Store.open(Path(home)) as store:
        wf = Workflow(store, operator="bench", terminal=f"worker-{os.getpid()}", key_factory=timed_key)
        wf.pki  # the store's own CAs, made or loaded before the clock starts
        barrier.wait()
        start, cpu_start = time.perf_counter(), time.process_time()
        done = 0
        # Each worker takes the next application when it is free (as batch issuance claims
        # work): a fixed split would leave one worker idle while the other finishes, RSA key
        # generation times varying by ±50 % from key to key.
        for app_id in iter(work.get, None):
            wf.generate(app_id, at=GENERATE_AT)
            done += 1
        results.put((start, time.perf_counter(), done, keygen["seconds"], keygen["keys"],
                     time.process_time() - cpu_start))


def _keygen_worker(keys: int, barrier, results) -> None:
    from mynaemu.issuance.pki.keys import generate_rsa_key

    generate_rsa_key(2048)          # warm-up (imports, OpenSSL init) before the clock starts
    barrier.wait()
    start = time.perf_counter()
    for _ in range(keys):
        generate_rsa_key(2048)
    results.put(time.perf_counter() - start)


def time_keygen_parallel(keys: int, workers: int) -> float:
    """Keys/s of `workers` processes doing nothing but RSA-2048 key generation, `keys` each:
    the most any issuance can scale with `workers` on this machine at this moment."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_keygen_worker, args=(keys, barrier, results)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    walls = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
    return keys * workers / max(walls)


def time_issuance(cards: int, workers: int) -> dict:
    """Wall and busy seconds, cards issued, and the seconds spent in the workers' key generation
    for `cards` generate steps split over `workers` processes."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="mynaemu-bench-") as tmp:
        home = Path(tmp)
        ids = prepare_store(home, cards)
        barrier = ctx.Barrier(workers)
        results, work = ctx.Queue(), ctx.Queue()
        for app_id in ids + [None] * workers:
            work.put(app_id)
        procs = [ctx.Process(target=_worker, args=(str(home), work, barrier, results))
                 for i in range(workers)]
        for proc in procs:
            proc.start()
        spans = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join(60)
            if proc.exitcode != 0:
                raise SystemExit(f"worker {proc.pid} failed with exit code {proc.exitcode}")
        from mynaemu.issuance.store import Store

        with Store.open(home) as store:
            done = len(store.application_ids(("awaiting_delivery",)))
    wall = max(s[1] for s in spans) - min(s[0] for s in spans)
    busy = sum(s[1] - s[0] for s in spans)
    key_seconds = sum(s[3] for s in spans)
    keys = sum(s[4] for s in spans)
    return {"wall": wall, "done": done, "busy": busy, "key_seconds": key_seconds, "keys": keys,
            "cpu": sum(s[5] for s in spans)}


def measure_row(cards: int, workers: int) -> dict:
    """One issuance run of `cards` cards by `workers` processes, as a result row: cards/s, the
    key-generation bound from the keys generated in this very run, their ratio, keygen share."""
    from mynaemu.issuance.personalise import KEYS_PER_CARD

    run = time_issuance(cards, workers)
    done = run["done"]
    if done != cards:
        raise SystemExit(f"only {done} of {cards} cards were issued with {workers} worker(s)")
    if run["keys"] != done * KEYS_PER_CARD:
        raise SystemExit(f"{run['keys']} keys for {done} cards: expected {KEYS_PER_CARD} a card")
    in_run_per_key = run["key_seconds"] / run["keys"]
    rate = done / run["wall"]
    bound = workers / (KEYS_PER_CARD * in_run_per_key)
    return {"workers": workers, "cards": done, "wall_s": run["wall"], "cards_per_s": rate,
            "ms_per_key": in_run_per_key * 1000, "bound": bound, "ratio": rate / bound,
            "keygen_share": run["key_seconds"] / run["busy"],
            # CPUs the workers actually got (CPU seconds / wall seconds): on a shared machine
            # 2 workers may get far less than 2, which caps the 2-worker speed-up.
            "cpus": run["cpu"] / run["wall"]}


def compare_workers(cards: int, rounds: int = 3, workers=(1, 2), log=None) -> dict:
    """P3 of `python -m bench`: the worker counts take turns (1 2, 2 1, 1 2, ...) for `rounds`
    rounds so each sees the same machine load; returns {"rows": {workers: [row per round]},
    "best": {workers: the row with the most cards/s}, "keys_per_card": KEYS_PER_CARD}."""
    from mynaemu.issuance.pki.ca import default_test_pki
    from mynaemu.issuance.personalise import KEYS_PER_CARD

    if cards < 1 or rounds < 1 or not workers or any(w < 1 for w in workers):
        raise ValueError("cards, rounds and worker counts must be positive")
    say = log or (lambda text: None)
    default_test_pki()  # build or load the TEST PKI cache outside every timing
    rows = {w: [] for w in workers}
    keygen = {w: [] for w in workers}
    # Keygen alone with as many keys per process as one worker generates in an issuance run.
    keys_each = max(4, min(40, cards * KEYS_PER_CARD // max(workers)))
    for r in range(rounds):
        order = workers if r % 2 == 0 else tuple(reversed(workers))
        for w in order:
            row = measure_row(cards, w)
            rows[w].append(row)
            say(f"P3 round {r + 1}/{rounds} {w} worker(s): {row['cards_per_s']:.2f} cards/s, "
                f"{row['ms_per_key']:.1f} ms/key, ratio {row['ratio']:.2f}, {row['cpus']:.2f} CPUs")
        for w in order:
            keygen[w].append(time_keygen_parallel(keys_each, w))
        say(f"P3 round {r + 1}/{rounds} keygen alone: " + ", ".join(f"{w} process(es) {keygen[w][-1]:.1f} keys/s"
                                                                    for w in workers))
    best = {w: max(runs, key=lambda row: row["cards_per_s"]) for w, runs in rows.items()}
    lo, hi = min(workers), max(workers)
    return {"rows": rows, "best": best, "keys_per_card": KEYS_PER_CARD, "keygen_alone": keygen,
            # speed-ups from runs of the same round (neighbours in time), median over the rounds
            "scaling": statistics.median(a["cards_per_s"] / b["cards_per_s"] for a, b in zip(rows[hi], rows[lo])),
            "keygen_scaling": statistics.median(a / b for a, b in zip(keygen[hi], keygen[lo]))}


def main(argv=None) -> int:
    from mynaemu.issuance.pki.ca import default_test_pki
    from mynaemu.issuance.personalise import KEYS_PER_CARD

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=16, help="applications issued per run (default 16)")
    parser.add_argument("--keys", type=int, default=72, help="RSA-2048 keys timed on their own (default 72)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "issuance.md")
    args = parser.parse_args(argv)
    if args.cards < 1 or args.keys < 1 or any(w < 1 for w in args.workers):
        parser.error("--cards, --keys and --workers must be positive")

    default_test_pki()  # build or load the TEST PKI cache outside every timing
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    key_times = time_keygen(args.keys)
    per_key = statistics.mean(key_times)
    rows = [measure_row(args.cards, workers) for workers in args.workers]

    try:
        from importlib.metadata import version
        crypto = version("cryptography")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        crypto = "?"
    header = (f"RSA-2048 key generation on its own: {per_key * 1000:.1f} ms/key mean over {args.keys} keys "
              f"(median {statistics.median(key_times) * 1000:.1f} ms, stdev {statistics.pstdev(key_times) * 1000:.1f} ms); "
              f"keys per card = KEYS_PER_CARD = {KEYS_PER_CARD}")
    table = ["| workers | cards | wall s | cards/s | ms/key in the run | keygen bound cards/s | ratio "
             "| keygen share of a card |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['workers']} | {r['cards']} | {r['wall_s']:.2f} | {r['cards_per_s']:.2f} | "
                     f"{r['ms_per_key']:.1f} | {r['bound']:.2f} | {r['ratio']:.2f} | {r['keygen_share'] * 100:.0f} % |")
    print(header)
    print("\n".join(table))

    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = [
        "# Issuance benchmark",
        "",
        f"Run {when} on {platform.machine()} with {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"cryptography {crypto}; `python bench/bench_issuance.py --cards {args.cards} --keys {args.keys} "
        f"--workers {' '.join(map(str, args.workers))}`. Load average before the run: {load_before:.2f} "
        "(other processes on the machine lower the 2-worker figures).",
        "",
        header + ".",
        "",
        "Issuance = the workflow's `generate` step per card: 受付, the card's key pairs, the two TEST",
        "certificates, personalisation into a card image and the 交付通知書, one store transaction each;",
        "workers are processes sharing one SQLite store (WAL, BEGIN IMMEDIATE).",
        "The workers' key generation is timed inside the run (ms/key in the run; RSA key generation",
        "varies a lot from key to key, so the stand-alone figure above is only a reference).",
        "keygen bound = workers / (keys per card × in-run seconds per key), the rate if issuing a card",
        "cost nothing but its keys; ratio = measured cards/s / bound; keygen share = time in key",
        "generation / time the workers were busy.",
        "",
        *table,
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(doc), encoding="utf-8")
    print(f"written {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
