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

from mynaemu.card.aid import AID
from mynaemu.card.ids import JpkiEF
from mynaemu.card.status import SW

AID_JPKI = AID.JPKI
SELECT_JPKI = bytes.fromhex("00A4040C0A") + AID_JPKI
# user-authentication certificate (spec §3.1)
SELECT_EF = bytes.fromhex("00A4020C02") + JpkiEF.AUTH_CERT.to_bytes(2, "big")
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
    if resp[-2:] != SW.OK.bytes:
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
    from mynaemu.tools.harness import pcscd as pcscd_ctl

    missing = pcscd_ctl.missing_tools()
    if missing:
        raise RuntimeError("PC/SC stack not installed: " + ", ".join(missing))
    pcscd = pcscd_ctl.ensure_pcscd()
    server = None
    try:
        server = pcscd_ctl.start_card_server(path, in_process=False)
        reader = _Reader(pcscd_ctl.READER, "pyscard")
        try:
            return loop(reader.transmit, seconds)
        finally:
            reader.close()     # releases the PC/SC context while pcscd is still up
    finally:
        if server is not None:
            server.stop()
        pcscd.stop()


def _free_ports() -> list:
    """The vpcd slots (ports) with no card in them right now."""
    from mynaemu.tools.harness import pcscd as pcscd_ctl

    return [port for port in (pcscd_ctl.VPCD_PORT, pcscd_ctl.VPCD_PORT + 1)
            if not pcscd_ctl.reader_state(pcscd_ctl.reader_for_port(port))[0]]


SIDES = ("mynaemu", "echo", "echo+data")
CLIENTS = ("lean", "pyscard")


def _serve(kind: str, path: Path, port: int, log_dir: Path):
    """Start the server of `kind` as a subprocess on `port` and wait until pcscd sees its card:
    "mynaemu" is `mynaemu card serve PATH`, "echo" bench.echo_card (9000 to everything),
    "echo+data" bench.echo_card --read-data (READ BINARY answered with Le bytes). Returns a
    CardServerHandle (stop() kills it by PID and waits for the slot to empty)."""
    from mynaemu.tools.harness import pcscd as pcscd_ctl

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


def _pin_threads(pid: int, cpus) -> None:
    """_pin for every thread of process `pid` (pcscd runs one thread per reader and per client;
    threads it starts later inherit the affinity of the thread that starts them)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return                          # gone, or no /proc: nothing to pin
    for tid in tids:
        _pin(int(tid), cpus)


def _pin(pid: int, cpus) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:
            pass  # the process is gone already, or affinity is not ours to set: run unpinned


def _blocks(pair: dict, seconds: float, read_len: dict) -> dict:
    """Interleave the SELECT EF + READ BINARY loop on every connection of `pair` (side ->
    transmit) in blocks of BLOCK_PAIRS pairs, A B A B ..., until each side has run `seconds`;
    {side: (APDUs, seconds)}. Blocks of ~15 ms put both sides under the same machine load."""
    for side, transmit in pair.items():
        loop(transmit, 0.1, read_len[side])          # warm-up + answer checks
    done = {side: [0, 0.0] for side in pair}
    select_ef, read = SELECT_EF, READ_256
    while min(t for _, t in done.values()) < seconds:
        for side, transmit in pair.items():
            start = time.perf_counter()
            for _ in range(BLOCK_PAIRS):
                transmit(select_ef)
                transmit(read)
            done[side][1] += time.perf_counter() - start
            done[side][0] += 2 * BLOCK_PAIRS
    return {side: tuple(v) for side, v in done.items()}


BLOCK_PAIRS = 100


def compare_with_echo(path: Path, seconds: float, rounds: int = 6, log=None, sides=SIDES, pin: bool = True,
                      clients=CLIENTS) -> dict:
    """P1: APDU/s of `mynaemu card serve` vs the echo cards, both through the same pcscd + vpcd.

    vpcd has two slots; each comparison (mynaemu vs one other side of `sides`) serves both cards
    at once, one per slot, and the client alternates between them in blocks of BLOCK_PAIRS
    SELECT EF + READ BINARY pairs (_blocks), so both sides see the same machine load at the same
    moments: on a shared VM the rate of a side swings by ±20 % from one second to the next,
    and turns taken one after the other measured that swing more than the cards. The slots
    swap sides every round (a slot may be a little faster than the other); each round starts
    fresh server processes. Every client of `clients` (CLIENTS: the lean ctypes client,
    pyscard) runs `seconds` per side in each round, their order rotated. With `pin`, this
    process, pcscd and the servers are pinned to one CPU: on a small VM a request that wakes a
    process on the other CPU costs far more than one on the same CPU (6,000 instead of 13,000
    APDU/s here with pcscd on the other CPU), and where the scheduler puts pcscd's reader
    threads made one slot up to 2x slower than the other.

    Returns {client: {side: [APDU/s per round], "count"/"time": {side: totals}, "ratio": {other
    side: median over rounds of mynaemu / other}, "spread": {other side: (min, max) of those},
    "best": {other side: best mynaemu round / best other round}}, "ports": the two slots,
    "cpu": None unpinned}. RuntimeError when the PC/SC stack cannot be used.
    """
    from mynaemu.tools.harness import pcscd as pcscd_ctl

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
    others = [k for k in sides if k != "mynaemu"]
    result = {}
    for client in clients:
        result[client] = {k: [] for k in sides}
        result[client].update(count={k: 0 for k in sides}, time={k: 0.0 for k in sides},
                              rounds={other: [] for other in others})
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    cpus = {max(allowed)} if pin and len(allowed) > 1 else None
    result["cpu"] = next(iter(cpus)) if cpus else None
    ports = (pcscd_ctl.VPCD_PORT, pcscd_ctl.VPCD_PORT + 1)
    result["ports"] = ports
    read_len = {k: (None if k == "echo" else 256) for k in sides}

    def comparison(other: str, swap: bool, order: tuple, tmp: Path) -> dict:
        # Other users of the machine may restart pcscd or take a slot at any moment: a round
        # that fails on PC/SC is run again (3 attempts) on a pcscd brought up afresh.
        placed = dict(zip(("mynaemu", other), ports[::-1] if swap else ports))
        for attempt in range(3):
            servers = []
            try:
                handles.append(pcscd_ctl.ensure_pcscd())
                # pcscd on the same CPU as the client and the cards: its reader threads, left
                # to the scheduler, made one slot up to 2x slower than the other at times.
                _pin_threads(handles[-1].pid, cpus)
                _wait_slots_free(ports)
                for kind, port in placed.items():
                    servers.append(_serve(kind, path, port, tmp))
                    _pin(servers[-1].pid, cpus)
                got = {}
                for client in order:
                    readers = {kind: _Reader(pcscd_ctl.reader_for_port(port), client)
                               for kind, port in placed.items()}
                    try:
                        got[client] = _blocks({k: r.transmit for k, r in readers.items()}, seconds, read_len)
                    finally:
                        for reader in readers.values():
                            reader.close()
                return got
            except transient as exc:
                if attempt == 2:
                    raise RuntimeError(f"P1 mynaemu/{other} round failed 3 times, last: {exc}") from None
                say(f"P1 mynaemu/{other} round failed ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:100]}); retrying")
                time.sleep(1.0)
            finally:
                for server in servers:
                    server.stop()
        raise AssertionError("unreachable")

    _pin(0, cpus)
    try:
        with tempfile.TemporaryDirectory(prefix="mynaemu-bench-p1-") as tmp:
            for r in range(rounds):
                order = clients[r % len(clients):] + clients[:r % len(clients)]
                for other in others:
                    for client, sample in comparison(other, r % 2 == 1, order, Path(tmp)).items():
                        res = result[client]
                        for kind, (n, t) in sample.items():
                            res[kind].append(n / t)
                            res["count"][kind] += n
                            res["time"][kind] += t
                        res["rounds"][other].append(sample["mynaemu"][0] / sample["mynaemu"][1]
                                                    / (sample[other][0] / sample[other][1]))
                for client in clients:
                    res = result[client]
                    say(f"P1 round {r + 1}/{rounds} {client}: " + ", ".join(
                        f"mynaemu/{other} {res['rounds'][other][-1]:.3f}" for other in others))
    finally:
        _pin(0, allowed)
        for handle in reversed(handles):
            _pin_threads(handle.pid, allowed)     # a pcscd we did not start runs on as before
            handle.stop()
    for client in clients:
        res = result[client]
        res["ratio"], res["spread"], res["best"] = {}, {}, {}
        for other in others:
            per_round = res["rounds"][other]
            res["ratio"][other] = statistics.median(per_round)
            res["spread"][other] = (min(per_round), max(per_round))
            res["best"][other] = max(res["mynaemu"]) / max(res[other])
    return result


def _wait_slots_free(ports, timeout: float = 60.0) -> None:
    """Wait until both vpcd slots are empty (the machine's other users may hold one a while)."""
    deadline = time.monotonic() + timeout
    while True:
        free = _free_ports()
        if all(port in free for port in ports):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"vpcd slots {[p for p in ports if p not in free]} stayed occupied for "
                               f"{timeout:.0f} s")
        time.sleep(0.5)


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
