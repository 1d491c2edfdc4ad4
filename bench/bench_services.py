"""Service concurrency benchmark (not a test): the centre and the OCSP responder under load.

Each service runs in its own server process (`python -m bench.bench_services serve SERVICE
MAX_WORKERS PROCESSES`, started and stopped here; it prints its port and a ready request body),
as `--workers` worker processes sharing the port (issuance/http/prefork.py; default two per CPU, as
the serve commands; the centre's challenges shared through a store as `kiosk serve` shares them); the clients run in this process, each a thread with its own kept-alive connection
(HTTP/1.1, Nagle off, requests prepared in advance), and only ever connect to 127.0.0.1.

- centre: `POST /v1/session` MACed with a registered kiosk key (what every kiosk transaction
  starts with: HMAC check, JSON, a fresh nonce);
- ocsp: `POST /` with an OCSP request for a good certificate (CertID lookup, the status, an
  RSA-2048 signature by the CA).

Levels 1, 8, 32, 64 and 200 concurrent clients, `seconds` each, for `rounds` rounds (levels in
order within a round, so the single-client rate is measured in the same run, next to the
others). Per level: requests/s (median round), p50/p99 latency (all rounds' samples), errors
(a refused, reset or timed-out request, or any status but 200; a request on a reused
connection that the server had just closed as idle is retried once on a fresh one, as
issuance/http/keepalive.py's client does, and counted apart as a retry, not an error).
Figure: requests/s at 200 clients / requests/s at 1 client, per service; target ≥ 1.5 with 0
errors at 200.

Run from the repository root: `python -m bench.bench_services [--seconds S] [--rounds N]`;
writes bench/results/services.md.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "services.md"
LEVELS = (1, 8, 32, 64, 200)
SERVICES = ("centre", "ocsp")
HOST = "127.0.0.1"   # clients never connect anywhere else
KIOSK_ID = "TEST-KIOSK-BENCH"


# -- the server process ------------------------------------------------------------------------

def _serve(service: str, max_workers: int | None = None, processes: int | None = None) -> None:
    """Run one service on loopback until stdin closes; print {"port", "request"} first.
    `processes`: worker processes sharing the port (issuance/http/prefork.py; default two per CPU, as
    the serve commands)."""
    import datetime as _dt
    import logging
    import secrets
    import tempfile

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509 import ocsp as x509_ocsp

    from mynaemu.issuance.http.prefork import Prefork, default_workers
    from mynaemu.issuance.kiosk.centre import Centre
    from mynaemu.issuance.kiosk.centre_http import serve_centre
    from mynaemu.issuance.kiosk.records import MemoryCentreTrail
    from mynaemu.issuance.kiosk.challenges import SharedChallenges
    from mynaemu.issuance.kiosk.residents import MemoryResidentDirectory
    from mynaemu.issuance.kiosk.wire import request_mac
    from mynaemu.issuance.pki.ca import default_test_pki
    from mynaemu.issuance.pki.ocsp import OcspResponder, serve_ocsp
    from mynaemu.issuance.pki.revocation import MemoryRevocationSource
    from mynaemu.issuance.store import Store
    from mynaemu.issuance.store import StoreSpentChallenges

    processes = processes or default_workers()
    logging.basicConfig(level=logging.WARNING)   # as a service would run: no access log lines
    pki = default_test_pki()
    now = _dt.datetime.now(_dt.timezone.utc)
    options = {} if max_workers is None else {"max_workers": max_workers}
    tmp = tempfile.TemporaryDirectory(prefix="mynaemu-bench-")
    if service == "centre":
        key = secrets.token_bytes(32)
        # As `kiosk serve` runs it: the challenges shared by the workers, spent in a store.
        secret = SharedChallenges.new_secret()
        Store.open(tmp.name).close()                      # the spent set is schema v8
        spent = StoreSpentChallenges(Path(tmp.name) / "issuance.sqlite3")

        def worker(listeners, index):
            centre = Centre(trust_anchor=pki.auth_ca.certificate, directory=MemoryResidentDirectory(),
                            municipalities={}, kiosk_keys={KIOSK_ID: key}, trail=MemoryCentreTrail(),
                            challenges=SharedChallenges(secret, spent) if processes > 1 else None)
            server, _, _ = serve_centre(centre, HOST, listener=listeners[0], **options)
            return server.shutdown
        body = b'{"method": "shin"}'
        head = {"Content-Type": "application/json", "X-Kiosk-Id": KIOSK_ID,
                "X-Kiosk-Mac": request_mac(key, "POST", "/v1/session", body).hex()}
        request = _request_bytes("/v1/session", body, head)
    elif service == "ocsp":
        ee = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = pki.auth_ca.issue_auth(ee.public_key(), serial=0x5151, not_before=now - _dt.timedelta(days=1),
                                      not_after=now + _dt.timedelta(days=30), issue_id="TESTBENCH1")
        source = MemoryRevocationSource()
        source.add_issued("auth", 0x5151, now + _dt.timedelta(days=30), at=now - _dt.timedelta(days=1))
        responder = OcspResponder({"auth": pki.auth_ca, "sign": pki.sign_ca}, source,
                                  lambda: _dt.datetime.now(_dt.timezone.utc))

        def worker(listeners, index):
            server, _, _ = serve_ocsp(responder, HOST, listener=listeners[0], **options)
            return server.shutdown
        der = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, pki.auth_ca.certificate, hashes.SHA1()) \
            .build().public_bytes(serialization.Encoding.DER)
        request = _request_bytes("/", der, {"Content-Type": "application/ocsp-request"})
    else:
        raise SystemExit(f"unknown service {service!r}")
    from mynaemu.issuance.http.keepalive import KeepAliveServer

    pool = Prefork([(HOST, 0)], worker, processes, name=f"bench {service}")
    stop = threading.Event()
    try:
        pool.start()
        print(json.dumps({"port": pool.addresses[0][1], "request": request.hex(), "processes": processes,
                          "max_workers": max_workers or KeepAliveServer.max_workers}), flush=True)
        # until the parent closes our stdin (a thread only now: the workers are forked)
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        pool.supervise(stop)
    finally:
        pool.stop()
        tmp.cleanup()


def _request_bytes(path: str, body: bytes, headers: dict) -> bytes:
    head = {"Host": HOST, "Content-Length": str(len(body)), **headers}
    return (f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n") \
        .encode("latin-1") + body


class ServerProcess:
    """A service in its own process; `stop()` ends it (closing its stdin, then by its pid)."""

    def __init__(self, service: str, max_workers: int | None = None, processes: int | None = None):
        extra = [str(max_workers or 0), str(processes or 0)]
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.bench_services", "serve", service, *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=Path(__file__).resolve().parent.parent)
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"the {service} server process did not start")
        info = json.loads(line)
        self.port, self.request, self.max_workers = info["port"], bytes.fromhex(info["request"]), info["max_workers"]
        self.processes = info["processes"]

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process and its worker processes used so far
        (/proc), or nan."""
        try:
            pids = [self.proc.pid]
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                pids += [int(p) for p in (task / "children").read_text().split()]
            total = 0
            for pid in pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            return total / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)


# -- the clients -------------------------------------------------------------------------------

class _Client:
    """One kept-alive connection sending the same request; reconnects when the server closes."""

    def __init__(self, port: int, request: bytes):
        self.port, self.request = port, request
        self.sock = None
        self.buf = b""

    def _connect(self):
        self.sock = socket.create_connection((HOST, self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read_answer(self) -> tuple[int, bool]:
        """(status, server closes): one whole answer (Content-Length framing)."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed before a complete answer")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed in the middle of an answer")
            self.buf += chunk
        self.buf = self.buf[length:]
        return status, headers.get("connection", "").lower() == "close"

    def one(self) -> tuple[int, bool]:
        """(status, retried). OSError on a failure of a fresh connection."""
        for attempt in (0, 1):
            reused = self.sock is not None
            if not reused:
                self._connect()
            try:
                self.sock.sendall(self.request)
                status, closing = self._read_answer()
            except (ConnectionResetError, BrokenPipeError):
                self.close()
                if reused and attempt == 0 and not self.buf:
                    continue    # the server closed the idle connection first: go fresh, once
                raise
            if closing:
                self.close()
            return status, attempt == 1
        raise AssertionError("unreachable")


def run_level(port: int, request: bytes, clients: int, seconds: float) -> dict:
    """`clients` threads for `seconds`: requests/s, latencies (s), errors, retries."""
    start = threading.Barrier(clients + 1)
    stop = threading.Event()
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    retries = [0] * clients
    samples: list = []

    def work(i):
        client = _Client(port, request)
        try:
            start.wait(30)
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    status, retried = client.one()
                except OSError as exc:
                    errors[i] += 1
                    if len(samples) < 5:
                        samples.append(repr(exc))
                    client.close()
                    continue
                lat[i].append(time.perf_counter() - t0)
                retries[i] += retried
                if status != 200:
                    errors[i] += 1
                    if len(samples) < 5:
                        samples.append(f"HTTP {status}")
        except threading.BrokenBarrierError:
            errors[i] += 1
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait(30)
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - t0
    client_cpu = (time.process_time() - c0) / elapsed
    done = [x for per in lat for x in per]
    return {"clients": clients, "requests": len(done), "rps": len(done) / elapsed, "latencies": done,
            "errors": sum(errors), "retries": sum(retries), "error_samples": samples, "client_cpu": client_cpu}


def _percentile(values: list, q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(service: str, *, seconds: float = 2.0, rounds: int = 3, levels=LEVELS, log=None,
            max_workers: int | None = None, processes: int | None = None) -> dict:
    """Every level for `rounds` rounds against one server process: per-level summary + ratio.
    `max_workers`: each worker process's thread pool (default: the services' default);
    `processes`: worker processes (default: two per CPU, as the serve commands)."""
    server = ServerProcess(service, max_workers, processes)
    try:
        run_level(server.port, server.request, 1, min(0.3, seconds))      # warm-up
        per_level = {n: [] for n in levels}
        cpu = {n: [] for n in levels}
        # 1 and 200 side by side in every round: their ratio compares neighbouring moments.
        order = sorted(levels, key=lambda n: (n not in (min(levels), max(levels)), n))
        for r in range(rounds):
            for n in order:
                c0 = server.cpu_seconds()
                res = run_level(server.port, server.request, n, seconds)
                res["server_cpu"] = (server.cpu_seconds() - c0) / seconds
                per_level[n].append(res)
                if log:
                    log(f"{service} round {r + 1}/{rounds}, {n:3d} clients: {res['rps']:8.0f} req/s, "
                        f"p50 {_percentile(res['latencies'], 0.5) * 1000:.2f} ms, errors {res['errors']}, "
                        f"server CPU {res['server_cpu']:.2f}, clients' CPU {res['client_cpu']:.2f}")
        summary = {}
        for n, runs in per_level.items():
            lat = [x for r in runs for x in r["latencies"]]
            summary[n] = {"rps": statistics.median(r["rps"] for r in runs),
                          "p50_ms": _percentile(lat, 0.5) * 1000, "p99_ms": _percentile(lat, 0.99) * 1000,
                          "errors": sum(r["errors"] for r in runs), "retries": sum(r["retries"] for r in runs),
                          "requests": sum(r["requests"] for r in runs),
                          "server_cpu": statistics.median(r["server_cpu"] for r in runs),
                          "client_cpu": statistics.median(r["client_cpu"] for r in runs),
                          "error_samples": [s for r in runs for s in r["error_samples"]][:5]}
        top, one = max(levels), min(levels)
        ratios = [a["rps"] / b["rps"] for a, b in zip(per_level[top], per_level[one]) if b["rps"]]
        return {"service": service, "levels": summary, "ratio": statistics.median(ratios) if ratios else 0.0,
                "round_ratios": ratios, "max_workers": server.max_workers,
                "processes": server.processes, "seconds": seconds, "rounds": rounds}
    finally:
        server.stop()


def figures(results: list, target: float) -> list:
    """The summary's figures: one per service (200 / 1 client), and the errors at 200 clients."""
    from bench.report import HIGHER, LOWER, Figure

    out = []
    for res in results:
        lv = res["levels"]
        one, top = lv[min(lv)], lv[max(lv)]
        levels = "; ".join(f"{n}: {s['rps']:,.0f}/s p50 {s['p50_ms']:.1f} p99 {s['p99_ms']:.1f} ms"
                           + (f" {s['errors']} err" if s["errors"] else "") for n, s in lv.items())
        out.append(Figure(
            f"S1 {res['service']}", f"{res['service']} service: requests/s at {max(lv)} clients / at 1 client",
            res["ratio"], target, HIGHER,
            detail=(f"{levels} (server process CPU {one['server_cpu']:.2f} at 1 client, {top['server_cpu']:.2f} "
                    f"at {max(lv)}; rounds {', '.join(f'{x:.2f}' for x in res['round_ratios'])}; "
                    f"{top['retries']} idle-close retries at {max(lv)})"),
            sampling=("" if res is not results[0] else
                      f"each service as {res['processes']} worker process(es) sharing its port (issuance/http/prefork.py), "
                      f"each with a bounded pool of {res['max_workers']} threads, "
                      f"clients as threads of the bench process with kept-alive connections to 127.0.0.1; levels "
                      f"{', '.join(str(n) for n in lv)} clients × {res['seconds']:g} s per round, 1 and "
                      f"{max(lv)} clients back to back, {res['rounds']} rounds; ratio = median of the per-round "
                      "ratios; p50/p99 over all rounds"),
            bars=[(f"{n}", s["rps"]) for n, s in lv.items()], unit="req/s"))
    errors = sum(res["levels"][max(res["levels"])]["errors"] for res in results)
    samples = [x for res in results for x in res["levels"][max(res["levels"])]["error_samples"]][:3]
    out.append(Figure(
        "S1 errors", "services: failed requests at 200 clients (resets, timeouts, non-200), both services",
        float(errors), 0.0, LOWER,
        detail=(f"{errors} of {sum(res['levels'][max(res['levels'])]['requests'] for res in results):,} requests"
                + (f" (e.g. {'; '.join(samples)})" if samples else "")),
        bars=[(res["service"], float(res["levels"][max(res["levels"])]["errors"])) for res in results],
        unit="errors"))
    return out


def table(results: list) -> str:
    rows = ["| service | clients | requests/s | × 1 client | p50 ms | p99 ms | errors | retries | server CPU | "
            "clients' CPU |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for res in results:
        base = res["levels"][min(res["levels"])]["rps"]
        for n, s in res["levels"].items():
            rows.append(f"| {res['service']} | {n} | {s['rps']:,.0f} | {s['rps'] / base:.2f} | {s['p50_ms']:.2f} | "
                        f"{s['p99_ms']:.2f} | {s['errors']} | {s['retries']} | {s['server_cpu']:.2f} | "
                        f"{s['client_cpu']:.2f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["serve"] and len(argv) == 4:
        _serve(argv[1], int(argv[2]) or None, int(argv[3]) or None)
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.bench_services", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="each server process's thread pool (default theirs)")
    parser.add_argument("--processes", type=int, default=None, help="worker processes per service (default: CPUs)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="client counts, e.g. 1,200")
    args = parser.parse_args(argv)
    levels = tuple(int(x) for x in args.levels.split(","))
    from bench.report import machine

    results = [measure(s, seconds=args.seconds, rounds=args.rounds, levels=levels, max_workers=args.workers,
                       processes=args.processes, log=lambda t: print(t, file=sys.stderr)) for s in SERVICES]
    text = "\n".join([
        "# Services under concurrent clients (bench/bench_services.py)", "",
        f"{machine()}; {args.rounds} rounds × {args.seconds:g} s per level; each service as worker processes sharing its port.", "",
        table(results), "",
        *(f"- {r['service']}: 200 clients / 1 client = {r['ratio']:.2f} (rounds "
          f"{', '.join(f'{x:.2f}' for x in r['round_ratios'])}), {r['processes']} worker process(es) × a pool of {r['max_workers']} threads"
          for r in results), ""])
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
