"""Pre-forked worker processes for the back office's services (the centre, the OCSP/CRL responder).

Why: one Python process runs Python code on one core at a time (the GIL), and a single kept-alive
client already keeps a service's process busy 0.8-0.9 of a core, so a thread pool alone cannot
serve 200 clients faster than one (issue 9, "Benchmark"; bench/bench_services.py). N processes,
each with the server base's own thread pool, request deadline and 503/408 answers
(issuance/http/keepalive.py), share the port.

How the port is shared: the parent reserves each address once with a socket bound under
SO_REUSEPORT that never listens (so the port, "0" included, stays this service's across worker
restarts); every worker binds its own listening socket to that address with SO_REUSEPORT, and the
kernel spreads new connections over the workers by a hash of their addresses. (One listening
socket inherited by all workers was measured first: the process that happened to be awake took a
whole burst of connects, e.g. all 8 of 8 kept-alive clients, and the other idled.) Linux admits
only sockets of the same user to a SO_REUSEPORT group, so another local user cannot join it.

Supervision: the parent forks `workers` children before it starts any thread (a fork copies only
the calling thread; locks held by others would stay locked in the child) and waits until each
says it is listening. A worker that dies is logged with its status and forked again (after a
back-off when it died within a second of starting, so a worker that cannot start does not spin).
`stop()` (the serve commands call it on SIGTERM/SIGINT) sends SIGTERM to every worker, waits for
them to close their servers (`stop_grace`), kills what is left and reaps all: no child outlives
the parent. Should the parent itself be killed (SIGKILL), each worker gets SIGTERM from the
kernel (PR_SET_PDEATHSIG) and also notices its new parent within `ORPHAN_CHECK` seconds.
Workers ignore SIGINT (a Ctrl-C reaches the whole process group; the parent stops them in
order). Logs: workers inherit the parent's stderr and logging set-up, so they write where the
parent writes, each line as the parent would.

A worker runs `worker_main(listeners, index)`, which starts its servers on the given listening
sockets (in the order of the reserved addresses) and returns a callable that stops them; the
worker then waits for SIGTERM, calls it, and exits with os._exit (never returning into the
caller's stack, which is the parent's).
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import logging
import os
import select
import signal
import socket
import threading
import time
from typing import Callable, Sequence

log = logging.getLogger("mynaemu.prefork")

LISTEN_BACKLOG = 1024          # as issuance/keepalive.py: the stdlib's 5 reset most of 200 clients
ORPHAN_CHECK = 0.5             # s between a worker's checks that its parent is still there
STARTUP_TIMEOUT = 60.0         # s a worker may take to start listening
STOP_GRACE = 5.0               # s workers get to close their servers before SIGKILL
_PR_SET_PDEATHSIG = 1


class WorkerStartError(RuntimeError):
    """A worker process exited (or hung) before it listened: nothing is served."""


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reserve(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) under SO_REUSEPORT that does not listen: it holds the port
    (port 0: a free one) for listening sockets of the worker processes."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # a fixed port still in TIME_WAIT
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def listen_shared(address) -> socket.socket:
    """A listening socket on a reserved address (SO_REUSEPORT: one per worker process)."""
    sock = socket.socket(_family(address[0]), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address[:2])
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent goes (Linux); elsewhere the poll remains."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit status {os.WEXITSTATUS(status)}"


class Prefork:
    """`workers` processes serving the reserved `addresses` (see the module's docstring).

    Use: ``pool = Prefork(addresses, worker_main, workers); pool.start()`` (WorkerStartError if
    one cannot listen), then ``pool.supervise(stop_event)`` until the event is set, then
    ``pool.stop()``. `addresses` are (host, port) pairs, port 0 for any free one; the bound ones
    are `pool.addresses`. Call start() from a process that runs no other thread.
    """

    def __init__(self, addresses: Sequence[tuple], worker_main: Callable, workers: int, *,
                 name: str = "service", stop_grace: float = STOP_GRACE, startup_timeout: float = STARTUP_TIMEOUT):
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.worker_main = worker_main
        self.workers = workers
        self.name = name
        self.stop_grace = stop_grace
        self.startup_timeout = startup_timeout
        self._reserved: list[socket.socket] = []
        try:
            for host, port in addresses:
                self._reserved.append(reserve(host, port))
        except BaseException:
            self.close()
            raise
        self.addresses = [s.getsockname()[:2] for s in self._reserved]
        self._parent = os.getpid()
        self._slots: dict[int, int] = {}          # pid -> worker index
        self._started: dict[int, float] = {}     # worker index -> when its current process started
        self._backoff: dict[int, float] = {}      # worker index -> seconds before the next restart
        self._due: dict[int, float] = {}          # worker index -> when to fork it again
        self.restarts = 0
        self._stopped = False

    # -- the parent ----------------------------------------------------------------------------
    @property
    def pids(self) -> list[int]:
        return sorted(self._slots)

    def start(self) -> None:
        """Fork every worker and wait until each listens; on failure stop all, WorkerStartError."""
        pending = {}
        try:
            for index in range(self.workers):
                pid, ready = self._spawn(index, wait_ready=True)
                pending[pid] = ready
            deadline = time.monotonic() + self.startup_timeout
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WorkerStartError(f"{self.name}: {len(pending)} worker(s) did not start listening "
                                           f"within {self.startup_timeout:g} s")
                readable, _, _ = select.select(list(pending.values()), [], [], min(left, 0.1))
                for pid, fd in list(pending.items()):
                    if fd in readable:
                        got = os.read(fd, 1)
                        os.close(fd)
                        del pending[pid]
                        if got != b"r":
                            self._reap_failed(pid)
                    else:
                        done, status = os.waitpid(pid, os.WNOHANG)
                        if done:
                            self._slots.pop(pid, None)
                            raise WorkerStartError(f"{self.name}: worker process {pid} {_describe(status)} "
                                                   "before it listened (its error is logged above)")
        except BaseException:
            for fd in pending.values():
                os.close(fd)
            self.stop()
            raise

    def _reap_failed(self, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        self._slots.pop(pid, None)
        raise WorkerStartError(f"{self.name}: worker process {pid} {_describe(status)} before it listened "
                               "(its error is logged above)")

    def _spawn(self, index: int, *, wait_ready: bool):
        read_fd, write_fd = os.pipe()
        # Until the worker has its own handlers, a SIGTERM must wait (the parent's would only set
        # the parent's flag, in the child's copy of it).
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                if pid < 0:
                    os.close(read_fd)
                    os.close(write_fd)
        if pid == 0:  # the worker: never returns
            code = 70  # EX_SOFTWARE
            try:
                os.close(read_fd)
                self._worker(index, write_fd)
                code = 0
            except BaseException:
                try:
                    log.exception("%s worker %d failed", self.name, index)
                except BaseException:
                    pass
            finally:
                os._exit(code)
        os.close(write_fd)
        self._slots[pid] = index
        self._started[index] = time.monotonic()
        if not wait_ready:
            os.close(read_fd)   # a restarted worker: the supervisor watches its exit only
            return pid, None
        return pid, read_fd

    def supervise(self, stop: threading.Event, poll: float = 0.1) -> None:
        """Reap workers that exit and fork them again until `stop` is set."""
        while not stop.is_set():
            self.check()
            stop.wait(poll)

    def check(self) -> None:
        """One supervision step: reap exited workers, fork the ones whose back-off is over."""
        while self._slots:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            index = self._slots.pop(pid, None)
            if index is None:
                continue    # not one of ours (the caller's own child)
            lived = time.monotonic() - self._started.get(index, 0.0)
            if lived < 1.0:
                self._backoff[index] = min(10.0, max(0.5, 2 * self._backoff.get(index, 0.25)))
            else:
                self._backoff[index] = 0.0
            delay = self._backoff[index]
            log.warning("%s worker %d (pid %d) %s after %.1f s; starting it again%s", self.name, index, pid,
                        _describe(status), lived, f" in {delay:g} s" if delay else "")
            self._due[index] = time.monotonic() + delay
        now = time.monotonic()
        for index, due in list(self._due.items()):
            if now >= due and not self._stopped:
                del self._due[index]
                self._spawn(index, wait_ready=False)
                self.restarts += 1

    def stop(self) -> None:
        """SIGTERM every worker, SIGKILL those still there after `stop_grace`, reap all, free the
        ports. Idempotent."""
        self._stopped = True
        self._due.clear()
        for pid in list(self._slots):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_grace
        while self._slots:
            for pid in list(self._slots):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    self._slots.pop(pid, None)
            if not self._slots:
                break
            if time.monotonic() >= deadline:
                for pid in list(self._slots):
                    log.warning("%s worker pid %d did not stop within %g s: killed", self.name, pid, self.stop_grace)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    try:
                        os.waitpid(pid, 0)
                    except ChildProcessError:
                        pass
                    self._slots.pop(pid, None)
                break
            time.sleep(0.02)
        self.close()

    def close(self) -> None:
        for sock in self._reserved:
            sock.close()

    # -- a worker --------------------------------------------------------------------------------
    def _worker(self, index: int, ready_fd: int) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        _die_with_parent()
        if os.getppid() != self._parent:
            return                      # the parent went before the request above took effect
        listeners = []
        for reserved in self._reserved:
            listeners.append(listen_shared(reserved.getsockname()))
            reserved.close()            # the parent's reservation: not this process's business
        stopper = self.worker_main(listeners, index)
        try:
            os.write(ready_fd, b"r")
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
        os.close(ready_fd)
        try:
            while not stop.wait(ORPHAN_CHECK):
                if os.getppid() != self._parent:
                    log.warning("%s worker %d: the parent process is gone; stopping", self.name, index)
                    break
        finally:
            stopper()


WORKERS_PER_CPU = 2


def default_workers() -> int:
    """Two workers per CPU this process may run on (the serve commands' default).

    Why two: each worker keeps a pool of 64 threads; once a worker holds more kept-alive links
    than threads, the extra links are parked and re-queued on every request, and that hand-over
    costs more CPU than the request (bench S1 on 2 CPUs, 200 clients: one worker per CPU gave
    1.25x (centre) and 1.40x (OCSP) the 1-client rate, two per CPU 1.80x and 1.75x, four per
    CPU 1.48x and 1.68x). More processes than CPUs cost little here: the work is CPU-bound and
    the kernel spreads connections across them (SO_REUSEPORT)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus) * WORKERS_PER_CPU


@dataclasses.dataclass
class WorkerStack:
    """A Prefork serving a stack, and the URLs it will answer on once started."""

    pool: Prefork
    centre_url: str | None
    ocsp_url: str
    crl_url: str


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_until_signal(pool: Prefork, announce: Callable[[], None]) -> None:
    """Start the workers, `announce()` once all listen, supervise them until SIGTERM/SIGINT, then
    stop them all. The signal handlers are this process's until it returns."""
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        pool.start()
        announce()
        pool.supervise(stop)
    finally:
        pool.stop()
        for s, handler in old.items():
            signal.signal(s, handler)


__all__ = ["Prefork", "WorkerStartError", "WorkerStack", "reserve", "listen_shared", "default_workers",
           "run_until_signal", "http_url", "LISTEN_BACKLOG"]
