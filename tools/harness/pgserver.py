"""A private PostgreSQL server for tests and benches: no service, no port but loopback, no trace.

``PgServer().start()`` finds Debian's PostgreSQL binaries (``/usr/lib/postgresql/<version>/bin``,
else ``initdb`` on PATH; ``ensure_installed()`` runs ``apt-get install postgresql`` when neither is
there), runs ``initdb`` into a fresh temporary directory and starts ``postgres`` listening on
127.0.0.1 at a free port only, with its unix socket inside that directory. PostgreSQL refuses to
run as root: as root the directory is given to the ``postgres`` system user (created by Debian's
package; else ``nobody``) and the server runs as that user. The superuser ``mynaemu`` has a random
password (scram-sha-256 on loopback), carried in the URL ``start()`` returns. ``stop()`` stops the
server by its PID (``pg_ctl stop -m fast``, then SIGKILL if it is still there) and removes the
directory. A small watchdog process does the same if the process that started the server dies
without stopping it (a test run killed with kill -9), so no server outlives its owner.

Durability: fsync stays on unless ``fast=True`` (the tests: a crash of the machine is not what
they test); ``synchronous_commit=off`` either way, the same promise as the SQLite store's WAL with
synchronous=NORMAL (a crash may lose the last commits, never their order or consistency), so the
benches compare like with like.

Command line (for a developer; prints the URL, stops on Ctrl-C):

    python -m mynaemu.tools.harness.pgserver [--fast]
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

__all__ = ["PgServerError", "PgServer", "find_bin_dir", "ensure_installed", "shared_server", "fresh_schema_url",
           "drop_schema"]

SUPERUSER = "mynaemu"
DATABASE = "mynaemu"


class PgServerError(Exception):
    """PostgreSQL could not be found, installed, started or stopped (one line)."""


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, else the directory of initdb on PATH."""
    candidates = []
    for path in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        version = Path(path).parent.parent.name
        try:
            candidates.append((float(version), Path(path).parent))
        except ValueError:
            continue
    if candidates:
        return max(candidates)[1]
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def ensure_installed() -> Path:
    """The binaries directory; installs Debian's ``postgresql`` with apt-get when it is missing."""
    found = find_bin_dir()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PgServerError("PostgreSQL is not installed and cannot be installed here "
                            "(needs root and apt-get): apt-get install postgresql")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            raise PgServerError(f"{' '.join(cmd[:2])} failed: {tail[0]}")
    found = find_bin_dir()
    if found is None:
        raise PgServerError("apt-get installed postgresql but no initdb was found under /usr/lib/postgresql")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_user() -> pwd.struct_passwd | None:
    """Who runs the server: None = ourselves (not root); as root, postgres or else nobody."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PgServerError("running as root and neither a postgres nor a nobody user exists")


class PgServer:
    """One private server. Use as a context manager, or start() … stop()."""

    def __init__(self, *, fast: bool = False, base_dir: str | os.PathLike | None = None,
                 bin_dir: str | os.PathLike | None = None, max_connections: int = 100):
        self.fast = fast
        self.base_dir = base_dir
        self.bin_dir = Path(bin_dir) if bin_dir else None
        self.max_connections = max_connections
        self.dir: Path | None = None
        self.port: int | None = None
        self.password = secrets.token_urlsafe(18)
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self._user = None
        self.watchdog: subprocess.Popen | None = None

    # --- helpers ------------------------------------------------------------------------------
    def _as_user(self, cmd: list, **kwargs) -> subprocess.CompletedProcess:
        user = self._user
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=self.dir,
                              **extra, **kwargs)

    def _log_tail(self) -> str:
        try:
            lines = (self.dir / "server.log").read_text(errors="replace").strip().splitlines()
        except (OSError, TypeError):
            return ""
        return lines[-1] if lines else ""

    # --- life cycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> str:
        """Initialise and start the server; returns the URL of database ``mynaemu``."""
        if self.process is not None:
            raise PgServerError("this server is already started")
        bin_dir = self.bin_dir or ensure_installed()
        self._user = _run_user()
        self.dir = Path(tempfile.mkdtemp(prefix="mynaemu-pg-", dir=self.base_dir))
        try:
            self._start(bin_dir, timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _start(self, bin_dir: Path, timeout: float) -> None:
        data, sock = self.dir / "data", self.dir / "sock"
        sock.mkdir()
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._user is not None:
            for path in (self.dir, sock, pwfile):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        init = self._as_user([bin_dir / "initdb", "-D", data, "-U", SUPERUSER, "--pwfile", pwfile,
                              "-A", "scram-sha-256", "--auth-local", "scram-sha-256", "-E", "UTF8",
                              "--no-locale", "--no-instructions"] + (["--no-sync"] if self.fast else []))
        pwfile.unlink()
        if init.returncode != 0:
            tail = (init.stderr or init.stdout).strip().splitlines()[-1:] or ["?"]
            raise PgServerError(f"initdb failed: {tail[0]}")
        settings = {
            "listen_addresses": "127.0.0.1", "unix_socket_directories": str(sock),
            "max_connections": str(self.max_connections), "synchronous_commit": "off",
            "shared_buffers": "128MB", "logging_collector": "off", "log_min_messages": "warning",
            "log_lock_waits": "on", "deadlock_timeout": "200ms",
        }
        if self.fast:
            settings.update({"fsync": "off", "full_page_writes": "off"})
        for attempt in range(5):
            self.port = _free_port()
            args = [bin_dir / "postgres", "-D", data, "-p", str(self.port)]
            for key, value in settings.items():
                args += ["-c", f"{key}={value}"]
            log = open(self.dir / "server.log", "ab")
            user = self._user
            extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
            # its own session: a Ctrl-C meant for the tests does not reach the server first
            self.process = subprocess.Popen([str(a) for a in args], stdout=log, stderr=log, cwd=self.dir,
                                            start_new_session=True, **extra)
            log.close()
            if self._wait_ready(timeout):
                break
            self._kill()
            if "could not bind" not in self._log_tail() and "in use" not in self._log_tail():
                raise PgServerError(f"postgres did not start: {self._log_tail() or 'no log'}")
        else:
            raise PgServerError("postgres could not bind a free loopback port in 5 tries")
        password = urllib.parse.quote(self.password, safe="")
        admin = f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/postgres"
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        self.url = f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{DATABASE}"
        self.watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.process.pid), str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        password = urllib.parse.quote(self.password, safe="")
        url = f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/postgres"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                psycopg.connect(url, connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def _kill(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        self.process = None

    def stop(self) -> None:
        """pg_ctl stop -m fast, then SIGKILL by PID if the postmaster is still there; remove the directory."""
        if self.watchdog is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.watchdog.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.watchdog.wait(5)
            self.watchdog = None
        proc = self.process
        if proc is not None and proc.poll() is None:
            bin_dir = self.bin_dir or find_bin_dir()
            if bin_dir is not None:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    self._as_user([bin_dir / "pg_ctl", "stop", "-D", self.dir / "data", "-m", "fast", "-w",
                                   "-t", "10"], timeout=20)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self._kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self.url = None

    def __enter__(self) -> "PgServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# Run by the watchdog process: argv = owner pid, postmaster pid, directory. When the owner is gone,
# a fast shutdown (SIGINT), SIGKILL after 10 s, then the directory is removed.
_WATCHDOG = """
import os, shutil, signal, sys, time
owner, server, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
while alive(owner):
    time.sleep(0.5)
if alive(server):
    os.kill(server, signal.SIGINT)
    for _ in range(100):
        if not alive(server):
            break
        time.sleep(0.1)
    else:
        os.kill(server, signal.SIGKILL)
shutil.rmtree(folder, ignore_errors=True)
"""


# --- one server per process, for test suites ---------------------------------------------------
_SHARED: PgServer | None = None


def shared_server() -> PgServer:
    """A server started once per process (fast mode) and stopped at exit."""
    global _SHARED
    if _SHARED is None or _SHARED.process is None or _SHARED.process.poll() is not None:
        server = PgServer(fast=True)
        server.start()
        atexit.register(server.stop)
        _SHARED = server
    return _SHARED


def fresh_schema_url(url: str, name: str | None = None) -> str:
    """A new empty schema in the database at ``url`` and a URL whose connections use it (its
    search_path), so each test gets its own store without the cost of a database."""
    import psycopg

    name = name or f"t_{secrets.token_hex(6)}"
    if not name.replace("_", "").isalnum():
        raise ValueError(f"schema name must be letters, digits and _: {name!r}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query.append(("options", f"-csearch_path={name}"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def drop_schema(url: str) -> None:
    """Drop the schema a fresh_schema_url points at (its search_path)."""
    import psycopg

    parts = urllib.parse.urlsplit(url)
    options = dict(urllib.parse.parse_qsl(parts.query)).get("options", "")
    if not options.startswith("-csearch_path="):
        raise ValueError("not a fresh_schema_url")
    name = options.split("=", 1)[1]
    base = urllib.parse.urlunsplit(parts._replace(query=""))
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Start a private PostgreSQL on loopback until Ctrl-C.")
    parser.add_argument("--fast", action="store_true", help="fsync off (tests)")
    args = parser.parse_args(argv)
    try:
        server = PgServer(fast=args.fast)
        url = server.start()
    except PgServerError as exc:
        print(f"pgserver: {exc}", file=sys.stderr)
        return 1
    print(url, flush=True)
    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.append(1))
    try:
        while not stop and server.process.poll() is None:
            time.sleep(0.2)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
