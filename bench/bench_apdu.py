"""APDU throughput benchmark (not a test): the card called in-process vs through pcscd + vpcd.

One run measures both paths on the same persona card with the same loop - SELECT EF 000A
(`00 A4 02 0C 02 00 0A`) then READ BINARY of 256 bytes (`00 B0 00 00 00`) in the JPKI AP - and
prints APDU/s for each and the ratio PC/SC / in-process, then writes bench/results/apdu.md.

The PC/SC path is what any real client sees: pyscard -> pcscd -> vpcd driver -> TCP -> the
`card serve` process. pcsc.md measured 21 APDU/s there without the TCP_QUICKACK fix and
4,900-7,200 APDU/s with it (trivial card), so the result also guards the 40 ms stall fix.

Run from the repository root: `python -m bench.bench_apdu` or `python bench/bench_apdu.py`
(`--seconds N` per path, default 3). It starts and stops what it needs: a pcscd (only if none
with vpcd is running) and a `card serve` subprocess, both stopped by PID afterwards.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AID_JPKI = bytes.fromhex("D392F000260100000001")
SELECT_JPKI = bytes.fromhex("00A4040C0A") + AID_JPKI
SELECT_EF = bytes.fromhex("00A4020C02000A")        # user-authentication certificate (spec §3.1)
READ_256 = bytes.fromhex("00B0000000")             # Le=00: 256 bytes from offset 0 (spec §6)
RESULTS = Path(__file__).resolve().parent / "results" / "apdu.md"
PERSONA = "adult"


def make_image(folder: Path) -> Path:
    """A persona card image from the project's own CLI (the same file `card serve` uses)."""
    path = folder / f"{PERSONA}.json"
    done = subprocess.run([sys.executable, "-m", "mynaemu.tools.cli", "card", "create", "--persona", PERSONA,
                           "-o", str(path), "--force"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise SystemExit(f"bench_apdu: card create failed: {lines[-1] if lines else done.returncode}")
    return path


def _check(resp: bytes, what: str) -> None:
    if resp[-2:] != b"\x90\x00":
        raise SystemExit(f"bench_apdu: {what} answered {resp[-2:].hex().upper()}, expected 9000")


def loop(transmit, seconds: float, read_len: int | None = 256) -> tuple:
    """Run SELECT EF + READ BINARY pairs for `seconds`; return (APDUs sent, elapsed seconds).

    `read_len` is the data length READ BINARY must return (None: any, for the echo card of P1,
    which answers a bare 9000 to everything)."""
    _check(transmit(SELECT_JPKI), "SELECT JPKI AP")
    _check(transmit(SELECT_EF), "SELECT EF 000A")
    first = transmit(READ_256)
    _check(first, "READ BINARY")
    if read_len is not None and len(first) != read_len + 2:
        raise SystemExit(f"bench_apdu: READ BINARY returned {len(first) - 2} bytes, expected {read_len}")
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):               # check the clock every 100 APDUs, not every one
            transmit(SELECT_EF)
            transmit(READ_256)
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def bench_in_process(path: Path, seconds: float) -> tuple:
    from mynaemu.card.core import Card

    card = Card.from_file(path)
    card.power_on()
    return loop(card.transmit, seconds)


def bench_pcsc(path: Path, seconds: float) -> tuple:
    """Through pcscd + vpcd with pyscard; raises RuntimeError with the reason if unavailable."""
    from mynaemu.tools import pcscd_ctl

    missing = pcscd_ctl.missing_tools()
    if missing:
        raise RuntimeError("PC/SC stack not installed: " + ", ".join(missing))
    pcscd = pcscd_ctl.ensure_pcscd()
    server = None
    try:
        server = pcscd_ctl.start_card_server(path, in_process=False)
        from smartcard.System import readers

        reader = next((r for r in readers() if str(r) == pcscd_ctl.READER), None)
        if reader is None:
            raise RuntimeError(f"reader {pcscd_ctl.READER!r} not found")
        conn = reader.createConnection()
        conn.connect()
        try:
            def transmit(apdu: bytes) -> bytes:
                data, sw1, sw2 = conn.transmit(list(apdu))
                return bytes(data) + bytes((sw1, sw2))

            return loop(transmit, seconds)
        finally:
            conn.disconnect()
            # Release the PC/SC context now, while pcscd is still up (else __del__ complains).
            getattr(conn, "release", lambda: None)()
    finally:
        if server is not None:
            server.stop()
        pcscd.stop()


def _free_ports() -> list:
    """The vpcd slots (ports) with no card in them right now."""
    from mynaemu.tools import pcscd_ctl

    return [port for port in (pcscd_ctl.VPCD_PORT, pcscd_ctl.VPCD_PORT + 1)
            if not pcscd_ctl.reader_state(pcscd_ctl.reader_for_port(port))[0]]


def _free_port(timeout: float = 60.0) -> int:
    """A vpcd slot with no card in it (the machine's other users may hold one for a while)."""
    deadline = time.monotonic() + timeout
    while True:
        free = _free_ports()
        if free:
            return free[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"both vpcd slots stayed occupied for {timeout:.0f} s")
        time.sleep(0.5)


SIDES = ("mynaemu", "echo", "echo+data")
CLIENTS = ("lean", "pyscard")


def _serve(kind: str, path: Path, port: int, log_dir: Path):
    """Start the server of `kind` as a subprocess on `port` and wait until pcscd sees its card:
    "mynaemu" is `mynaemu card serve PATH`, "echo" bench.echo_card (9000 to everything),
    "echo+data" bench.echo_card --read-data (READ BINARY answered with Le bytes). Returns a
    CardServerHandle (stop() kills it by PID and waits for the slot to empty)."""
    from mynaemu.tools import pcscd_ctl

    if kind not in SIDES:
        raise ValueError(f"unknown server kind {kind!r}")
    if kind == "mynaemu":
        return pcscd_ctl.start_card_server(path, port=port, in_process=False,
                                           log_path=log_dir / f"serve-{port}.log")
    echo_args = ("--read-data",) if kind == "echo+data" else ()
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return pcscd_ctl.start_card_server(
        path, port=port, in_process=False, log_path=log_dir / f"echo-{port}.log", env=env,
        command=[sys.executable, "-m", "bench.echo_card", "--port", port, *echo_args])


class _Reader:
    """One PC/SC connection to a vpcd slot, as a transmit(bytes) -> bytes callable.

    `client` "lean" is bench/pcsc_lean.py (libpcsclite through ctypes, byte buffers, as a C
    client such as OpenSC passes them); "pyscard" is pyscard, which returns each response as a
    list of ints (what a Python client of the card pays on top).
    """

    def __init__(self, reader_name: str, client: str = "pyscard"):
        if client not in CLIENTS:
            raise ValueError(f"unknown client {client!r} (one of {CLIENTS})")
        self._context = None
        if client == "lean":
            from bench import pcsc_lean

            self._context = pcsc_lean.Context()
            try:
                self.conn = self._context.connect(reader_name)
            except Exception:
                self._context.close()
                raise
            self.transmit = self.conn.transmit
            return
        from smartcard.System import readers

        reader = next((r for r in readers() if str(r) == reader_name), None)
        if reader is None:
            raise RuntimeError(f"reader {reader_name!r} not found")
        self.conn = reader.createConnection()
        self.conn.connect()

    def transmit(self, apdu: bytes) -> bytes:
        data, sw1, sw2 = self.conn.transmit(list(apdu))
        return bytes(data) + bytes((sw1, sw2))

    def close(self) -> None:
        try:
            if self._context is not None:
                self.conn.close()
                self._context.close()
                return
            self.conn.disconnect()
            getattr(self.conn, "release", lambda: None)()
        except Exception:
            pass  # pcscd went away under us: nothing left to release


def _measure_reader(reader_name: str, seconds: float, read_len, client: str = "pyscard") -> tuple:
    reader = _Reader(reader_name, client)
    try:
        loop(reader.transmit, min(0.2, seconds), read_len)    # warm-up: first connection, caches
        return loop(reader.transmit, seconds, read_len)
    finally:
        reader.close()


def _pin(pid: int, cpus) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:
            pass  # the process is gone already, or affinity is not ours to set: run unpinned


def compare_with_echo(path: Path, seconds: float, rounds: int = 6, log=None, sides=SIDES, pin: bool = True,
                      clients=CLIENTS) -> dict:
    """P1: APDU/s of `mynaemu card serve` vs the echo card, both through the same pcscd + vpcd.

    `sides` (default all of SIDES) take turns in one vpcd slot (the same reader path for all:
    the two slots of vpcd differ in speed by up to 2x here), a fresh server process each turn,
    the order rotated every round (A B C, B C A, C A B, ...), `rounds` rounds of `seconds` per
    turn and client; in each turn every client of `clients` (CLIENTS: the lean ctypes client,
    pyscard) runs the same SELECT EF + READ BINARY loop in turn, their order rotated too. With
    `pin`, this process and the servers are pinned to one CPU, the same for every side: on a
    small VM a request that wakes a process on the other CPU costs far more than one on the same
    CPU, and where the scheduler puts a fresh server otherwise swings a turn by 2x either way.

    Returns {client: {side: [APDU/s per round], "count"/"time": {side: totals}, "ratio": {other
    side: median over rounds of mynaemu / other}, "spread": {other side: (min, max) of those},
    "best": {other side: best mynaemu turn / best other turn}}, "port": ..., "cpu": None unpinned}.
    RuntimeError when the PC/SC stack cannot be used.
    """
    from mynaemu.tools import pcscd_ctl

    missing = pcscd_ctl.missing_tools()
    if missing:
        raise RuntimeError("PC/SC stack not installed: " + ", ".join(missing))
    if rounds < 1 or seconds <= 0:
        raise ValueError("need rounds >= 1 and seconds > 0")
    sides, clients = tuple(sides), tuple(clients)
    if "mynaemu" not in sides or len(sides) < 2 or any(k not in SIDES for k in sides):
        raise ValueError(f"sides must include mynaemu and at least one of {SIDES[1:]}")
    if not clients or any(c not in CLIENTS for c in clients):
        raise ValueError(f"clients must be some of {CLIENTS}")
    say = log or (lambda text: None)
    from smartcard.Exceptions import SmartcardException

    transient = (pcscd_ctl.PcscdError, SmartcardException, RuntimeError)
    handles = []          # every pcscd we used; only the ones we started get stopped
    result = {}
    for client in clients:
        result[client] = {k: [] for k in sides}
        result[client].update(count={k: 0 for k in sides}, time={k: 0.0 for k in sides})
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    cpus = {max(allowed)} if pin and len(allowed) > 1 else None
    result["cpu"] = next(iter(cpus)) if cpus else None

    def turn(kind: str, order: tuple, tmp: Path) -> dict:
        # Other users of the machine may restart pcscd or take the slot at any moment: a turn
        # that fails on PC/SC is run again (3 attempts) on a pcscd brought up afresh.
        for attempt in range(3):
            try:
                handles.append(pcscd_ctl.ensure_pcscd())
                port = _free_port()
                handle = _serve(kind, path, port, tmp)
                _pin(handle.pid, cpus)
                try:
                    got = {client: _measure_reader(pcscd_ctl.reader_for_port(port), seconds,
                                                   256 if kind != "echo" else None, client)
                           for client in order}
                finally:
                    handle.stop()
                result["port"] = port
                return got
            except transient as exc:
                if attempt == 2:
                    raise RuntimeError(f"P1 {kind} turn failed 3 times, last: {exc}") from None
                say(f"P1 {kind} turn failed ({type(exc).__name__}: {' '.join(str(exc).split())[:100]}); retrying")
                time.sleep(1.0)
        raise AssertionError("unreachable")

    _pin(0, cpus)
    try:
        with tempfile.TemporaryDirectory(prefix="mynaemu-bench-p1-") as tmp:
            for r in range(rounds):
                shift = r % len(sides)
                order = clients[r % len(clients):] + clients[:r % len(clients)]
                for kind in sides[shift:] + sides[:shift]:
                    for client, (n, t) in turn(kind, order, Path(tmp)).items():
                        res = result[client]
                        res[kind].append(n / t)
                        res["count"][kind] += n
                        res["time"][kind] += t
                for client in clients:
                    say(f"P1 round {r + 1}/{rounds} {client}: "
                        + ", ".join(f"{k} {result[client][k][-1]:,.0f}" for k in sides) + " APDU/s")
    finally:
        _pin(0, allowed)
        for handle in reversed(handles):
            handle.stop()
    for client in clients:
        res = result[client]
        mine = res["mynaemu"]
        res["ratio"], res["spread"], res["best"] = {}, {}, {}
        for other in sides:
            if other == "mynaemu":
                continue
            per_round = [m / o for m, o in zip(mine, res[other])]
            res["ratio"][other] = statistics.median(per_round)
            res["spread"][other] = (min(per_round), max(per_round))
            res["best"][other] = max(mine) / max(res[other])
    return result


from bench.report import machine  # noqa: E402  (one description of the machine for every result)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per path (default 3)")
    parser.add_argument("--image", type=Path, default=None,
                        help=f"card image to use (default: a fresh `{PERSONA}` persona); only read, never written")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"Markdown result file (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")

    with tempfile.TemporaryDirectory(prefix="mynaemu-bench-") as tmp:
        if args.image is not None:
            # A copy: the loop changes no PIN state, but `card serve` owns the file it serves.
            path = Path(tmp) / "card.json"
            try:
                shutil.copyfile(args.image, path)
            except OSError as exc:
                parser.error(f"--image {args.image}: {exc.strerror or exc}")
        else:
            path = make_image(Path(tmp))
        rows = []
        n, t = bench_in_process(path, args.seconds)
        rows.append(("in-process (Card.transmit)", n, t))
        pcsc_error = None
        try:
            n, t = bench_pcsc(path, args.seconds)
            rows.append(("PC/SC (pyscard -> pcscd -> vpcd -> card serve)", n, t))
        except RuntimeError as exc:
            pcsc_error = str(exc)

    lines = [
        "| path | APDUs | seconds | APDU/s | per APDU |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, n, t in rows:
        per = t / n
        per_text = f"{per * 1e6:.1f} µs" if per < 1e-3 else f"{per * 1e3:.2f} ms"
        lines.append(f"| {name} | {n:,} | {t:.2f} | {n / t:,.0f} | {per_text} |")
    ratio_line = ""
    if len(rows) == 2:
        ratio = rows[1][1] / rows[1][2] / (rows[0][1] / rows[0][2])
        ratio_line = f"Ratio PC/SC / in-process: **{ratio:.4f}** (in-process is {1 / ratio:,.0f}× faster)"
    else:
        ratio_line = f"PC/SC not measured: {pcsc_error}"

    table = "\n".join(lines)
    print(table)
    print(ratio_line)

    card_text = f"the card {args.image.name}" if args.image else f"the `{PERSONA}` persona card"
    doc = [
        "# APDU throughput: in-process vs PC/SC",
        "",
        f"Measured {datetime.datetime.now().astimezone().isoformat(timespec='seconds')} by "
        f"`python -m bench.bench_apdu --seconds {args.seconds:g}` on {machine()}.",
        "",
        f"Loop: SELECT EF 000A (`00A4020C02000A`) + READ BINARY 256 bytes (`00B0000000`) in the JPKI AP "
        f"of {card_text}, for {args.seconds:g} s per path.",
        "",
        table,
        "",
        ratio_line,
        "",
        "pcsc.md reference: 21 APDU/s through vpcd without TCP_QUICKACK, 4,900–7,200 APDU/s with it "
        "(trivial card).",
        "",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(doc), encoding="utf-8")
    print(f"written {args.output}")
    return 0 if pcsc_error is None else 1


if __name__ == "__main__":
    sys.exit(main())
