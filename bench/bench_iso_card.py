"""In-process ISO 7816 benchmark (issue 5 P2): mynaemu's card core vs vsmartcard's card OS.

Both cards are called directly in this process, no socket and no reader: mynaemu's
`Card.transmit(apdu)` and vsmartcard's `Iso7816OS.execute(apdu)` (Debian package
vsmartcard-vpicc / python3-virtualsmartcard, which needs pycryptodome). Both hold the same
file: a DF named by the JPKI AID (spec §2.1) with EF 000A = the user-authentication
certificate of an adult persona card, and both are sent the same APDU bytes:

- loop "select+read": SELECT EF 000A (`00 A4 02 0C 02 00 0A`) then READ BINARY of 256 bytes
  (`00 B0 00 00 00`), the pair bench_apdu.py times through PC/SC;
- loop "whole certificate": SELECT DF by name, SELECT EF, then READ BINARY in 256-byte chunks
  with the offset in P1P2 until the end (the OpenSC read of spec §10.1).

Before timing, every distinct APDU of both loops is sent to both cards and the responses must
be byte-identical (same operations, same answers). The two run in alternating turns, A B, B A,
... for `--rounds` rounds of `--seconds` each, so both see the same machine load; the result
is each one's best turn and the median of the per-round ratios. Target (issue 5): mynaemu at
least 3x vsmartcard's APDU/s.

Run from the repository root: `python -m bench.bench_iso_card` (`--seconds 1 --rounds 5` by
default). It finds vsmartcard under /usr/lib/python3/site-packages/virtualsmartcard (or
$VSMARTCARD_PATH, or through `dpkg -L python3-virtualsmartcard`) and writes
bench/results/iso_card.md.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mynaemu.card.aid import AID
from mynaemu.card.ids import JpkiEF
from mynaemu.card.status import SW

AID_JPKI = AID.JPKI                                 # spec §2.1
EF_AUTH_CERT = JpkiEF.AUTH_CERT                     # spec §3.1
SELECT_DF = bytes.fromhex("00A4040C0A") + AID_JPKI
SELECT_EF = bytes.fromhex("00A4020C02") + EF_AUTH_CERT.to_bytes(2, "big")
READ_256 = bytes.fromhex("00B0000000")
RESULTS = Path(__file__).resolve().parent / "results" / "iso_card.md"
DEFAULT_VSC = Path("/usr/lib/python3/site-packages/virtualsmartcard")
TARGET = 3.0


class BenchError(RuntimeError):
    """The benchmark cannot run here; the message says what to install."""


# -- the two cards ---------------------------------------------------------------------------------

def vsmartcard_path() -> Path:
    """The folder that holds the `virtualsmartcard` package."""
    candidates = [Path(os.environ["VSMARTCARD_PATH"])] if os.environ.get("VSMARTCARD_PATH") else []
    candidates.append(DEFAULT_VSC)
    try:
        listing = subprocess.run(["dpkg", "-L", "python3-virtualsmartcard"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()
        candidates += [Path(line).parent for line in listing if line.endswith("/virtualsmartcard/VirtualSmartcard.py")]
        candidates = [c if (c / "virtualsmartcard").is_dir() else c.parent for c in candidates]
    except (OSError, subprocess.TimeoutExpired):
        pass
    for path in candidates:
        if (path / "virtualsmartcard" / "VirtualSmartcard.py").exists():
            return path
    raise BenchError("vsmartcard's Python card OS not found: apt-get install vsmartcard-vpicc "
                     "(or set VSMARTCARD_PATH to the folder holding the virtualsmartcard package)")


def make_vsmartcard(cert: bytes):
    """vsmartcard's Iso7816OS with MF / DF(JPKI AID) / EF 000A = cert, powered up."""
    path = str(vsmartcard_path())
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        from virtualsmartcard.ConstantDefinitions import FDB
        from virtualsmartcard.SmartcardFilesystem import DF, MF, TransparentStructureEF
        from virtualsmartcard.SmartcardSAM import SAM
        from virtualsmartcard.VirtualSmartcard import Iso7816OS
    except ImportError as exc:
        raise BenchError(f"vsmartcard cannot be imported ({exc}); it needs pycryptodome: "
                         "pip install pycryptodome") from None
    mf = MF(filedescriptor=FDB["DF"])
    df = DF(parent=mf, fid=0x0100, dfname=AID_JPKI)
    mf.append(df)
    df.append(TransparentStructureEF(parent=df, fid=EF_AUTH_CERT, data=cert))
    sam = SAM(b"1234", b"1234567890")   # vsmartcard's own default SAM values; no PIN is used here
    sam.set_MF(mf)
    card = Iso7816OS(mf, sam)
    card.powerUp()
    return card


def make_mynaemu():
    """mynaemu's Card on an adult persona image, powered up; returns (card, EF 000A bytes)."""
    from mynaemu.card.core import Card
    from mynaemu.issuance.personas import build_persona

    image, _ = build_persona("adult")
    card = Card(image)
    card.power_on()
    return card, image.application("jpki").efs[EF_AUTH_CERT].data


# -- loops -------------------------------------------------------------------------------------------

def whole_cert_apdus(size: int) -> list:
    """SELECT DF, SELECT EF, then READ BINARY chunks of 256 (Le=00; the last one exact)."""
    apdus = [SELECT_DF, SELECT_EF]
    for offset in range(0, size, 256):
        n = min(256, size - offset)
        apdus.append(bytes((0x00, 0xB0, offset >> 8, offset & 0xFF, n & 0xFF)))
    return apdus


def check_same(mine, theirs, apdus) -> None:
    """Same operations, same answers: every APDU gets byte-identical responses from both."""
    for apdu in [SELECT_DF] + list(apdus):
        a, b = mine(apdu), theirs(apdu)
        if a != b or a[-2:] != SW.OK.bytes:
            raise BenchError(f"the cards answer {apdu.hex().upper()} differently: mynaemu "
                             f"{a[-2:].hex().upper()} ({len(a) - 2} bytes), vsmartcard "
                             f"{b[-2:].hex().upper()} ({len(b) - 2} bytes)")


def timed(transmit, apdus: list, seconds: float) -> float:
    """APDU/s of sending `apdus` over and over for about `seconds`."""
    batch = apdus * max(1, 100 // len(apdus))
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for apdu in batch:
            transmit(apdu)
        count += len(batch)
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def compare(mine, theirs, apdus, seconds: float, rounds: int) -> dict:
    check_same(mine, theirs, apdus)
    timed(mine, apdus, min(0.2, seconds))      # warm-up
    timed(theirs, apdus, min(0.2, seconds))
    runs = {"mynaemu": [], "vsmartcard": []}
    for r in range(rounds):
        order = (("mynaemu", mine), ("vsmartcard", theirs))
        for name, transmit in (order if r % 2 == 0 else order[::-1]):
            runs[name].append(timed(transmit, apdus, seconds))
    ratios = [m / v for m, v in zip(runs["mynaemu"], runs["vsmartcard"])]
    return {"runs": runs, "best": {k: max(v) for k, v in runs.items()},
            "ratio_best": max(runs["mynaemu"]) / max(runs["vsmartcard"]),
            "ratio_median": statistics.median(ratios)}


# -- report ------------------------------------------------------------------------------------------

from bench.report import machine  # noqa: E402


def write_results(results: dict, seconds: float, rounds: int, cert_size: int, command: str) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    lines = ["# In-process ISO 7816: mynaemu vs vsmartcard's card OS (issue 5 P2)", "",
             f"Measured {now} by `{command}` on {machine()}.", "",
             f"Both cards are called in-process (mynaemu `Card.transmit`, vsmartcard `Iso7816OS.execute`, "
             f"Debian vsmartcard-vpicc), both hold DF JPKI AID / EF 000A = the same {cert_size}-byte "
             f"certificate, both get the same APDU bytes and answer them byte-identically (checked). "
             f"Alternating turns of {seconds:g} s, {rounds} rounds; best turn each; ratio = mynaemu / vsmartcard.", "",
             "| loop | mynaemu APDU/s | vsmartcard APDU/s | ratio (best) | ratio (median of rounds) | target |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        ok = "met" if min(res["ratio_best"], res["ratio_median"]) >= TARGET else "MISSED"
        lines.append(f"| {name} | {res['best']['mynaemu']:,.0f} | {res['best']['vsmartcard']:,.0f} | "
                     f"{res['ratio_best']:.1f}× | {res['ratio_median']:.1f}× | ≥ {TARGET:g}× ({ok}) |")
    lines += ["", "Per-round APDU/s (mynaemu / vsmartcard):", ""]
    for name, res in results.items():
        pairs = ", ".join(f"{m:,.0f} / {v:,.0f}" for m, v in zip(res["runs"]["mynaemu"], res["runs"]["vsmartcard"]))
        lines.append(f"- {name}: {pairs}")
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_iso_card", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per turn (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1:
        parser.error("--seconds must be > 0 and --rounds >= 1")
    # vsmartcard logs every APDU at INFO (building the hex dump first); leave logging at its
    # default WARNING level for both, as a server would run.
    logging.getLogger().setLevel(logging.WARNING)
    try:
        card, cert = make_mynaemu()
        vsc = make_vsmartcard(cert)
    except BenchError as exc:
        print(f"bench_iso_card: {exc}", file=sys.stderr)
        return 2
    loops = {"select+read (SELECT EF, READ BINARY 256)": [SELECT_EF, READ_256],
             f"whole certificate ({len(cert)} bytes: SELECT DF, SELECT EF, READ ×{-(-len(cert) // 256)})":
                 whole_cert_apdus(len(cert))}
    results = {}
    try:
        for name, apdus in loops.items():
            card.transmit(SELECT_DF)
            vsc.execute(SELECT_DF)
            results[name] = compare(card.transmit, vsc.execute, apdus, args.seconds, args.rounds)
    except BenchError as exc:
        print(f"bench_iso_card: {exc}", file=sys.stderr)
        return 2
    for name, res in results.items():
        print(f"{name}:")
        print(f"  mynaemu    {res['best']['mynaemu']:>10,.0f} APDU/s")
        print(f"  vsmartcard {res['best']['vsmartcard']:>10,.0f} APDU/s")
        print(f"  ratio      {res['ratio_best']:.1f}x best, {res['ratio_median']:.1f}x median of rounds "
              f"(target >= {TARGET:g})")
    if not args.no_write:
        command = "python -m bench.bench_iso_card" + "".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
        write_results(results, args.seconds, args.rounds, len(cert), command)
        print(f"wrote {RESULTS}")
    return 0 if all(min(r["ratio_best"], r["ratio_median"]) >= TARGET for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
