"""The services as worker processes (issuance/http/prefork.py, issuance/kiosk/workers.py,
issuance/pki/workers.py, issuance/kiosk/challenges.py, issuance/store/challenges.py; `--workers`
of `kiosk serve` and `issue ocsp-serve`).

Which worker holds a connection is read from /proc (the server side of the TCP connection in
/proc/net/tcp, its inode among the workers' file descriptors), so the cross-worker tests know
they crossed; nothing in the services' answers names a process.
"""
from __future__ import annotations

import base64
import datetime as _dt
import http.client
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mynaemu.issuance.kiosk.centre import DEFAULT_NONCE_LIFETIME
from mynaemu.issuance.kiosk.keyfiles import load_or_create_kiosk_key
from mynaemu.issuance.kiosk.wire import Refusal, request_mac
from mynaemu.issuance.kiosk.challenges import SharedChallenges
from mynaemu.issuance.store import Store
from mynaemu.issuance.store import StoreSpentChallenges
from mynaemu.issuance.store.challenges import KEEP_AFTER_EXPIRY

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; SO_REUSEPORT balancing")

ROOT = Path(__file__).resolve().parents[3]
UTC = _dt.timezone.utc


# -- processes and connections, from /proc ------------------------------------------------------

def children(pid: int) -> set[int]:
    out = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out |= {int(p) for p in (task / "children").read_text().split()}
    except FileNotFoundError:
        pass
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def owner_of(sock: socket.socket, pids) -> int | None:
    """The process among `pids` holding the server end of the client socket `sock`."""
    lport = sock.getsockname()[1]
    rport = sock.getpeername()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == rport and int(f[2].split(":")[1], 16) == lport:
            inode = f[9]
            break
    if inode is None:
        return None
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        except FileNotFoundError:
            continue
    return None


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


# -- a `kiosk serve --workers 2` over a fresh store ----------------------------------------------

class Served:
    def __init__(self, home: Path, workers: int = 2):
        self.home = home
        Store.open(home).close()
        self.key = load_or_create_kiosk_key(home)
        running = home / "kiosk" / "centre.json"
        self.proc = subprocess.Popen([sys.executable, "-m", "mynaemu", "kiosk", "serve", "--home", str(home),
                                      "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=ROOT)
        doc = wait_for(lambda: running.exists() and json.loads(running.read_text()), 60)
        if not doc:
            self.proc.kill()
            raise AssertionError(f"kiosk serve did not start: {self.proc.communicate()[1].decode()[-2000:]}")
        self.url = doc["url"]
        self.port = int(self.url.rsplit(":", 1)[1])
        self.workers = (set() if workers == 1 else
                        wait_for(lambda: len(children(self.proc.pid)) == workers and children(self.proc.pid)))

    def stop(self) -> str:
        """SIGTERM (if still running); what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode("utf-8", "replace")

    def connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        conn.connect()
        return conn

    def post(self, conn, path: str, doc: dict) -> tuple[int, dict]:
        body = json.dumps(doc).encode()
        conn.request("POST", path, body, {"Content-Type": "application/json", "X-Kiosk-Id": "TEST-KIOSK-0001",
                                          "X-Kiosk-Mac": request_mac(self.key, "POST", path, body).hex()})
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    def one_per_worker(self, per_worker: int = 1) -> dict[int, list]:
        """Kept-alive connections, `per_worker` held by each worker (new ones until they are)."""
        held: dict[int, list] = {pid: [] for pid in self.workers}
        spare = []
        for _ in range(200):
            if all(len(v) >= per_worker for v in held.values()):
                break
            conn = self.connect()
            assert self.post(conn, "/v1/session", {"method": "shin"})[0] == 200   # accepted and served
            pid = owner_of(conn.sock, self.workers)
            if pid in held and len(held[pid]) < per_worker:
                held[pid].append(conn)
            else:
                spare.append(conn)
        for conn in spare:
            conn.close()
        assert all(len(v) >= per_worker for v in held.values()), "connections never reached every worker"
        return held


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Served(tmp_path_factory.mktemp("workers-home"))
    yield s
    s.stop()


def _redeem(nonce: str) -> dict:
    # Passes the request checks; the certificate is garbage, so a redemption that gets past the
    # challenge is refused next as cert-invalid: the reason says whether the challenge was taken.
    return {"method": "shin", "document": "juminhyo", "nonce": nonce,
            "certificate": base64.b64encode(b"not a certificate").decode(), "signature": ""}


# -- the centre's challenges across workers -------------------------------------------------------

def test_challenge_from_one_worker_is_redeemed_once_in_any(served):
    held = served.one_per_worker()
    (a, [conn_a]), (b, [conn_b]) = sorted(held.items())
    assert a != b
    # opened at A, redeemed at B: B knows it (the challenge passes; the garbage certificate does not)
    status, doc = served.post(conn_a, "/v1/session", {"method": "shin"})
    assert status == 200 and len(base64.b64decode(doc["nonce"])) == 32
    status, answer = served.post(conn_b, "/v1/issue", _redeem(doc["nonce"]))
    assert (status, answer["reason"]) == (403, "cert-invalid")
    # replayed at A (where it was opened) and at B again: refused in both
    for conn in (conn_a, conn_b):
        status, answer = served.post(conn, "/v1/issue", _redeem(doc["nonce"]))
        assert (status, answer["reason"]) == (409, "challenge-replayed")
    # and the other way round: answered at A, replayed to B
    status, doc = served.post(conn_b, "/v1/session", {"method": "shin"})
    assert served.post(conn_a, "/v1/issue", _redeem(doc["nonce"]))[1]["reason"] == "cert-invalid"
    assert served.post(conn_b, "/v1/issue", _redeem(doc["nonce"]))[1]["reason"] == "challenge-replayed"
    assert {owner_of(conn_a.sock, served.workers), owner_of(conn_b.sock, served.workers)} == {a, b}


def test_challenge_for_another_method_or_forged_is_refused_by_every_worker(served):
    held = served.one_per_worker()
    conns = [c for v in held.values() for c in v]
    status, doc = served.post(conns[0], "/v1/session", {"method": "genko"})
    nonce = base64.b64decode(doc["nonce"])
    forged = base64.b64encode(nonce[:-1] + bytes([nonce[-1] ^ 1])).decode()
    for conn in conns:
        wrong_method = served.post(conn, "/v1/issue", _redeem(doc["nonce"]))   # opened for genko, used as shin
        assert (wrong_method[0], wrong_method[1]["reason"]) == (409, "challenge-replayed")
        assert served.post(conn, "/v1/issue", _redeem(forged))[1]["reason"] == "challenge-replayed"


def test_racing_redemptions_in_two_workers_have_exactly_one_winner(served):
    held = served.one_per_worker(per_worker=4)
    conns = [c for v in held.values() for c in v]
    opener = conns[0]
    for _ in range(5):
        nonce = served.post(opener, "/v1/session", {"method": "shin"})[1]["nonce"]
        start = threading.Barrier(len(conns))
        reasons = [None] * len(conns)

        def go(i):
            start.wait(10)
            reasons[i] = served.post(conns[i], "/v1/issue", _redeem(nonce))[1]["reason"]

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(conns))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(reasons) == ["cert-invalid"] + ["challenge-replayed"] * (len(conns) - 1), reasons


def test_zero_errors_at_200_clients_with_workers(served):
    from bench import bench_services

    body = b'{"method": "shin"}'
    request = bench_services._request_bytes("/v1/session", body, {
        "Content-Type": "application/json", "X-Kiosk-Id": "TEST-KIOSK-0001",
        "X-Kiosk-Mac": request_mac(served.key, "POST", "/v1/session", body).hex()})
    res = bench_services.run_level(served.port, request, 200, 1.0)
    assert res["errors"] == 0, res["error_samples"]
    assert res["requests"] >= 200


# -- the challenge token and the spent-set, in one process ----------------------------------------

def test_shared_challenges_refuse_forgery_other_kiosk_replay_and_expiry(tmp_path):
    Store.open(tmp_path).close()
    spent = StoreSpentChallenges(tmp_path / "issuance.sqlite3")
    secret = SharedChallenges.new_secret()
    book, other_book = SharedChallenges(secret, spent), SharedChallenges(SharedChallenges.new_secret(), spent)
    now = _dt.datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    life = DEFAULT_NONCE_LIFETIME

    def refused(token, kiosk="K1", method="shin", at=now, who=book):
        with pytest.raises(Refusal) as info:
            who.take(token, kiosk, method, at, life)
        return info.value.reason

    token = book.open("K1", "shin", now + life)
    assert len(token) == 32 and token != book.open("K1", "shin", now + life)
    assert refused(token, kiosk="K2") == "challenge-replayed"        # another kiosk
    assert refused(token, method="genko") == "challenge-replayed"    # another method
    assert refused(token, who=other_book) == "challenge-replayed"    # another run's secret
    assert refused(token[:-1] + bytes([token[-1] ^ 0x80])) == "challenge-replayed"
    assert refused(token[:12] + bytes([token[12] ^ 1]) + token[13:]) == "challenge-replayed"  # expiry altered
    assert refused(token[:31]) == "challenge-replayed"
    book.take(token, "K1", "shin", now + _dt.timedelta(seconds=59), life)   # the one good use
    assert refused(token) == "challenge-replayed"
    late = book.open("K1", "shin", now + life)
    assert refused(late, at=now + life + _dt.timedelta(seconds=1)) == "challenge-expired"
    assert refused(late) == "challenge-replayed"       # spent by the late attempt, whatever happened next
    with pytest.raises(ValueError):
        SharedChallenges(b"short", spent)


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path):
    """A fresh store's location: the SQLite file, or a schema of the private PostgreSQL server."""
    if request.param == "sqlite":
        Store.open(tmp_path).close()            # the spent set is schema v8
        yield tmp_path / "issuance.sqlite3"
        return
    pytest.importorskip("psycopg")
    from mynaemu.tools.harness import pgserver

    try:
        url = pgserver.fresh_schema_url(pgserver.shared_server().url)
    except pgserver.PgServerError as exc:
        pytest.fail(f"PostgreSQL for the tests: {exc}")
    Store(url).close()
    yield url
    pgserver.drop_schema(url)


def test_spent_challenges_are_forgotten_only_well_after_expiry(location):
    spent = StoreSpentChallenges(location)
    now = _dt.datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    assert spent.spend(b"a" * 32, now + _dt.timedelta(seconds=60), now)
    assert not spent.spend(b"a" * 32, now + _dt.timedelta(seconds=60), now)
    assert spent.count() == 1
    later = now + _dt.timedelta(seconds=60) + KEEP_AFTER_EXPIRY - _dt.timedelta(seconds=1)
    assert spent.spend(b"b" * 32, later, later) and spent.count() == 2   # "a" kept: within the margin
    much_later = later + _dt.timedelta(seconds=2)
    assert spent.spend(b"c" * 32, much_later, much_later) and spent.count() == 2  # "a" dropped


def _spend_in_child(location, token, expires, now, start, results):
    start.wait(30)
    results.put(StoreSpentChallenges(location).spend(token, expires, now))


def test_spending_one_challenge_from_eight_processes_has_one_winner(location):
    ctx = multiprocessing.get_context("fork")   # each child opens its own connection (none exists here)
    now = _dt.datetime.now(UTC)
    start, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_spend_in_child, args=(location, b"t" * 32, now, now, start, results))
             for _ in range(8)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sorted(got) == [False] * 7 + [True]


# -- supervision ----------------------------------------------------------------------------------

def test_a_killed_worker_is_started_again_and_serves(tmp_path):
    s = Served(tmp_path)
    try:
        victim = min(s.workers)
        os.kill(victim, signal.SIGKILL)
        new = wait_for(lambda: (lambda c: len(c) == 2 and victim not in c and c)(children(s.proc.pid)))
        assert new and victim not in new and not alive(victim)
        s.workers = new
        held = s.one_per_worker()             # both, the new one included, take connections and answer
        assert set(held) == new
    finally:
        err = s.stop()
    assert f"(pid {victim}) killed by SIGKILL" in err and "starting it again" in err
    assert s.proc.returncode == 0
    assert not any(alive(p) for p in new)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_the_parent_leaves_no_worker(tmp_path, how):
    s = Served(tmp_path)
    workers = set(s.workers)
    assert len(workers) == 2 and all(alive(p) for p in workers)
    conn = s.connect()
    assert s.post(conn, "/v1/session", {"method": "shin"})[0] == 200
    s.proc.send_signal(how)
    code = s.proc.wait(20)
    assert code == (-signal.SIGKILL if how == signal.SIGKILL else 0)
    # SIGTERM/SIGINT: the parent reaped them before it exited; SIGKILL: the kernel's death signal
    assert wait_for(lambda: not any(alive(p) for p in workers), 10), [p for p in workers if alive(p)]
    if how != signal.SIGKILL:
        assert not (tmp_path / "kiosk" / "centre.json").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
    conn.close()
    s.stop()


def test_one_worker_keeps_a_single_process(tmp_path):
    s = Served(tmp_path, workers=1)
    try:
        time.sleep(0.5)
        assert children(s.proc.pid) == set()
        assert s.post(s.connect(), "/v1/session", {"method": "shin"})[0] == 200
    finally:
        s.stop()


def test_ocsp_serve_with_workers_answers_and_stops_cleanly(tmp_path):
    Store.open(tmp_path).close()
    env = {**os.environ, "MYNAEMU_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "mynaemu", "issue", "ocsp-serve", "--json", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    try:
        doc = json.loads(proc.stdout.readline())
        assert doc["workers"] == 2
        workers = children(proc.pid)
        assert len(workers) == 2
        port = int(doc["url"].rsplit(":", 1)[1])
        seen = set()
        for _ in range(40):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/crl/auth.crl")
            response = conn.getresponse()
            assert response.status == 200 and response.read()[:1] == b"\x30"   # a DER CRL
            seen.add(owner_of(conn.sock, workers))
            conn.close()
        assert seen == workers
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        proc.stdout.close()
        proc.stderr.close()
    assert not any(alive(p) for p in workers)


# -- the server base's refusals in each worker ----------------------------------------------------

_POOL_SCRIPT = textwrap.dedent("""
    import datetime as dt, json, sys, threading
    from mynaemu.issuance.pki.ca import default_test_pki
    from mynaemu.issuance.pki.ocsp import OcspResponder, serve_ocsp
    from mynaemu.issuance.http.prefork import Prefork
    from mynaemu.issuance.pki.revocation import MemoryRevocationSource

    pki = default_test_pki()

    def worker(listeners, index):
        responder = OcspResponder({"auth": pki.auth_ca}, MemoryRevocationSource(),
                                  lambda: dt.datetime.now(dt.timezone.utc))
        server, _, _ = serve_ocsp(responder, "127.0.0.1", listener=listeners[0], max_workers=1,
                                  max_pending=1, request_deadline=1.5)
        return server.shutdown

    pool = Prefork([("127.0.0.1", 0)], worker, 2)
    stop = threading.Event()
    pool.start()
    print(json.dumps({"port": pool.addresses[0][1]}), flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    try:
        pool.supervise(stop)
    finally:
        pool.stop()
""")


def test_503_and_408_still_come_from_each_worker():
    proc = subprocess.Popen([sys.executable, "-c", _POOL_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            cwd=ROOT)
    try:
        port = json.loads(proc.stdout.readline())["port"]
        workers = children(proc.pid)
        assert len(workers) == 2
        # Each worker: one thread, one queue place. Silent connections hold both until the
        # deadline; a third one at the same worker is told 503 at once.
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(16)]
        time.sleep(0.4)
        holders = {}
        for s in socks:
            pid = owner_of(s, workers)
            if pid is not None:
                holders.setdefault(pid, []).append(s)
        answers = []
        for s in socks:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            answers.append(data.split(b"\r\n", 1)[0])
            s.close()
        # each worker held exactly its thread's and its queue place's connection, which got 408;
        # every other connection was answered 503 at once
        assert {pid: len(v) for pid, v in holders.items()} == {pid: 2 for pid in workers}
        assert answers.count(b"HTTP/1.1 408 Request Timeout") == 2 * len(workers)
        assert answers.count(b"HTTP/1.1 503 Service Unavailable") == len(socks) - 2 * len(workers)
    finally:
        proc.stdin.close()
        proc.wait(20)
        proc.stdout.close()


def test_a_taken_port_is_one_line_and_no_worker(tmp_path):
    Store.open(tmp_path).close()
    taken = socket.create_server(("127.0.0.1", 0))     # no SO_REUSEPORT: nobody may share it
    try:
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "mynaemu", "kiosk", "serve", "--home", str(tmp_path),
                               "--workers", "2", "--port", str(port)], capture_output=True, text=True, timeout=60,
                              cwd=ROOT)
    finally:
        taken.close()
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use" in lines[0], proc.stderr
    assert not (tmp_path / "kiosk" / "centre.json").exists()
