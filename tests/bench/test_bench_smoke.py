"""Smoke tests of the benchmark harness (`python -m bench`): the report, the echo card behind the
real vpcd door, and quick runs of the one command with tiny durations (marked `bench`; the PC/SC
part also `pcsc`). The figures of a quick run mean little; what is checked is that every figure
is measured, lands in summary.md and summary.png, and lies where its definition allows.
"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from tests.support import REPO

import pytest

from bench import report
from bench.__main__ import parse_only
from bench.echo_card import EchoCard, default_atr
from bench.report import HIGHER, LOWER, Figure

ROOT = REPO
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- report ------------------------------------------------------------------------------------

def test_verdicts_follow_the_direction_of_the_target():
    assert Figure("A", "t", 0.95, 0.9, HIGHER).met is True
    assert Figure("A", "t", 0.85, 0.9, HIGHER).met is False
    assert Figure("B", "t", 2.4, 2.5, LOWER).met is True
    assert Figure("B", "t", 2.6, 2.5, LOWER).met is False
    unmeasured = Figure("C", "t", None, 3.0, error="vsmartcard not installed")
    assert unmeasured.met is None and unmeasured.verdict == "not measured"
    # a diagnostic explains a target figure: shown with its ratio, never counted met or missed
    side = Figure("A data", "t", 0.5, 0.9, HIGHER, diagnostic=True)
    assert side.met is None and side.verdict == "diagnostic" and side.target_text == "(≥ 0.9)"


def test_a_figure_needs_a_ratio_or_a_reason_and_a_known_direction():
    with pytest.raises(ValueError, match="needs the reason"):
        Figure("P9", "t", None, 1.0)
    with pytest.raises(ValueError, match="better must be"):
        Figure("P9", "t", 1.0, 1.0, better="sideways")


def test_markdown_table_and_plot(tmp_path):
    import datetime as dt

    figures = [
        Figure("P1", "a | b", 0.93, 0.9, HIGHER, detail="x 1 vs y 2", sampling="alternating",
               bars=[("mine", 7000.0), ("echo", 7500.0)], unit="APDU/s"),
        Figure("P4", "decision / floor", 2.7, 2.5, LOWER, detail="3 ms vs 1.1 ms",
               bars=[("accept", 3.0), ("floor", 1.1)], unit="ms"),
        Figure("P2", "in-process", None, 3.0, error="vsmartcard not installed"),
    ]
    text = report.markdown(figures, command="python -m bench --quick",
                           started=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), elapsed=12.0,
                           load=(0.5, 0.7))
    rows = [line for line in text.splitlines() if line.startswith("| P")]
    assert len(rows) == 3
    assert rows[0].split(" | ")[2:5] == ["0.93", "≥ 0.9", "met"]
    assert "a \\| b" in rows[0]                       # a pipe in a title cannot break the table
    assert rows[1].split(" | ")[2:5] == ["2.70", "≤ 2.5", "MISSED"]
    assert "not measured: vsmartcard not installed" in rows[2]
    assert "1 of 2 measured targets met." in text
    png = report.plot(figures, tmp_path / "out" / "summary.png")
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_only_takes_known_parts_in_suite_order():
    assert parse_only("p3,P1") == ["P1", "P3"]
    for bad in ("P5", "", "P1,,X"):
        with pytest.raises(Exception, match="--only"):
            parse_only(bad)


# -- the echo card behind the real door --------------------------------------------------------

def test_echo_card_answers_9000_to_everything():
    card = EchoCard(default_atr())
    assert card.power_on() == default_atr()
    for apdu in (bytes.fromhex("00A4020C02000A"), bytes.fromhex("00B0000000"), b"\xff", b""):
        assert card.transmit(apdu) == b"\x90\x00"
    assert card.apdus == 4
    with pytest.raises(ValueError, match="not a plausible ATR"):
        EchoCard(b"\x00\x01")


def _recv_frame(sock) -> bytes:
    head = b""
    while len(head) < 2:
        head += sock.recv(2 - len(head))
    n = int.from_bytes(head, "big")
    body = b""
    while len(body) < n:
        body += sock.recv(n - len(body))
    return body


def test_echo_card_through_the_vpcd_door():
    """A stand-in vpcd (the door is the TCP client): ATR, power on, then APDUs answered 9000."""
    from mynaemu.card.transport.vpcd import VpcdServer, frame

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    card = EchoCard(default_atr())
    door = VpcdServer(card, port=listener.getsockname()[1], log=lambda line: None)
    thread = door.serve_in_thread()
    try:
        conn, _ = listener.accept()
        conn.settimeout(10)
        conn.sendall(frame(b"\x04"))
        assert _recv_frame(conn) == default_atr()
        conn.sendall(frame(b"\x01"))
        for apdu in (bytes.fromhex("00A4020C02000A"), bytes.fromhex("00B0000000")):
            conn.sendall(frame(apdu))
            assert _recv_frame(conn) == b"\x90\x00"
        assert card.powered and card.apdus == 2
        conn.close()
    finally:
        door.stop()
        thread.join(5)
        listener.close()


# -- quick runs of the one command -------------------------------------------------------------

def _run_bench(tmp_path, *args, timeout=120):
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode in (0, 1), done.stderr[-2000:]        # 2 would be a usage error
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert (tmp_path / "summary.png").read_bytes().startswith(PNG_MAGIC)
    ratios = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if line.startswith("| P") and len(cells) >= 5:
            ratios[cells[0]] = (None if cells[2] == "–" else float(cells[2]), cells[4], line)
    return done, summary, ratios


def _vsmartcard_installed() -> bool:
    from bench import bench_iso_card

    try:
        bench_iso_card.make_vsmartcard(b"\x30\x00")
    except bench_iso_card.BenchError:
        return False
    return True


@pytest.mark.bench
def test_quick_run_of_p2_p3_p4(tmp_path):
    done, summary, ratios = _run_bench(tmp_path, "--only", "P2,P3,P4", "--rounds", "1", "--cards", "2",
                                       "--runs", "3", "--seconds", "0.1")
    assert set(ratios) == {"P2", "P3 1w", "P3 2w", "P3 scaling", "P4"}
    # Issuing a card costs its keys and more: at most the key-generation bound (small slack for
    # the timer granularity of a 2-card run).
    for key in ("P3 1w", "P3 2w"):
        ratio, _, line = ratios[key]
        assert ratio is not None and 0 < ratio <= 1.05, line
    assert ratios["P3 scaling"][0] > 0
    # The decision does everything its floor does and more (three exchanges, APDUs, JSON).
    assert ratios["P4"][0] is not None and ratios["P4"][0] > 1, ratios["P4"][2]
    if _vsmartcard_installed():
        assert ratios["P2"][0] is not None and ratios["P2"][0] > 0, ratios["P2"][2]
    else:
        assert "vsmartcard" in ratios["P2"][2]
    # The table printed on stdout is the one in summary.md.
    assert re.search(r"^\| P4 \|", done.stdout, re.M)
    assert "--quick" in summary and "alternat" in summary


@pytest.mark.bench
@pytest.mark.pcsc
def test_quick_run_of_p1_through_pcscd(tmp_path):
    from mynaemu.tools.harness import pcscd as pcscd_ctl

    missing = pcscd_ctl.missing_tools()
    if missing:
        pytest.skip("PC/SC stack not installed: " + ", ".join(missing))
    done, summary, ratios = _run_bench(tmp_path, "--only", "P1", "--rounds", "1", "--seconds", "0.3")
    assert set(ratios) == {"P1", "P1 data", "P1 pyscard"}
    assert ratios["P1 data"][1] == ratios["P1 pyscard"][1] == "diagnostic"
    for key in ("P1", "P1 data", "P1 pyscard"):
        ratio, verdict, line = ratios[key]
        assert ratio is not None, line
        # All servers sit behind the same door and pcscd, so no side can be several times
        # faster than another; a 40 ms stall (pcsc.md: 21 APDU/s) on one side would show as
        # a ratio near 0 or far above 1.
        assert 0.2 < ratio < 2.0, line
        rates = re.search(r"mynaemu ([\d,]+) vs ([\d,]+) APDU/s", line)
        assert rates and all(int(g.replace(",", "")) > 500 for g in rates.groups()), line
    assert "alternates between the two cards" in summary
