"""`card serve A B …`: several cards, pulling a card out and putting it back, `--eject-after`,
`--timing real`, `--record` (toolkit items 2 and 7).

Protocol tests run against a fake vpcd (a TCP listener in the test, tests/test_vpcd.py); the
PC/SC tests (marker pcsc; run them under the flock of COMMON.md) go through pcscd, OpenSC and
pyscard.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from tests.support import REPO
from click.testing import CliRunner

from mynaemu.card.transport.timing import DEFAULT_RSA_S, RealTiming, fi_di, is_contactless_atr
from mynaemu.card.transport.vpcd import VpcdServer
from mynaemu.tools.cli import main
from tests.card.transport.test_vpcd import FakeVpcd, RecordingCard

CONTACT_ATR = bytes.fromhex("3BE000FF8131FE4514")
CONTACTLESS_ATR = bytes.fromhex("3B888001000041E0B381A1003B")
SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def fake():
    f = FakeVpcd()
    yield f
    f.close()


def closed_by_card(fake, timeout=5.0) -> bool:
    fake.conn.settimeout(timeout)
    try:
        return fake.conn.recv(1) == b""
    except ConnectionResetError:
        return True


def no_connection_for(fake, seconds) -> bool:
    fake.listener.settimeout(seconds)
    try:
        conn, _ = fake.listener.accept()
    except (socket.timeout, TimeoutError):
        return True
    conn.close()
    return False


# -- timing model ---------------------------------------------------------------------------

def test_contact_rate_follows_the_atr():
    assert fi_di(CONTACT_ATR) == (372, 1)                      # T0 = E0: no TA1 (ISO 7816-3 §8.3)
    assert fi_di(bytes.fromhex("3B1096")) == (512, 32)          # T0 = 10: TA1 = 96 follows
    t = RealTiming(CONTACT_ATR)
    assert t.byte_seconds == pytest.approx(11 * 372 / 4_000_000)
    read = t.delay(bytes.fromhex("00B0000000"), bytes(256) + b"\x90\x00")
    assert read == pytest.approx((5 + 4 + 258 + 2 * 4) * 11 * 372 / 4_000_000)   # 258 > IFSC: 2 blocks
    assert 0.25 < read < 0.32


def test_rsa_adds_tenths_of_a_second_only_when_the_card_signs():
    t = RealTiming(CONTACT_ATR)
    sign = bytes.fromhex("802A00802233") + bytes(0x21)
    ok = t.delay(sign, bytes(256) + b"\x90\x00")
    refused = t.delay(sign, b"\x69\x82")
    assert ok - refused > DEFAULT_RSA_S * 0.99 and refused < 0.1
    assert RealTiming(CONTACT_ATR, rsa_seconds=0.8).delay(sign, b"\x90\x00") > 0.8


def test_contactless_is_faster_on_the_wire():
    assert is_contactless_atr(CONTACTLESS_ATR) and not is_contactless_atr(CONTACT_ATR)
    apdu, resp = bytes.fromhex("00B0000000"), bytes(256) + b"\x90\x00"
    assert RealTiming(CONTACTLESS_ATR).delay(apdu, resp) < RealTiming(CONTACT_ATR).delay(apdu, resp) / 5


def test_the_door_waits_the_timing_delay_for_apdus_only(fake):
    calls = []

    class Pace:
        def delay(self, command, response):
            calls.append((command, response))
            return 0.0

    card = RecordingCard()
    server = VpcdServer(card, "127.0.0.1", fake.port, backoff_start=0.02, backoff_max=0.1, timing=Pace())
    thread = server.serve_in_thread()
    try:
        fake.accept()
        fake.send(b"\x01")
        assert fake.exchange(b"\x04") == RecordingCard.atr
        assert fake.exchange(SELECT_JPKI) == SELECT_JPKI + b"\x90\x00"
        assert calls == [(SELECT_JPKI, SELECT_JPKI + b"\x90\x00")]
    finally:
        server.stop()
        thread.join(5)


# -- pulling the card out -------------------------------------------------------------------

def test_eject_after_n_apdus_then_insert(fake):
    card = RecordingCard()
    server = VpcdServer(card, "127.0.0.1", fake.port, backoff_start=0.02, backoff_max=0.1, eject_after=2)
    thread = server.serve_in_thread()
    try:
        fake.accept()
        fake.send(b"\x01")
        assert fake.exchange(b"\x04") == RecordingCard.atr      # control bytes do not count
        fake.exchange(b"\x00\xA4\x00\x00")
        fake.exchange(b"\x00\xB0\x00\x00\x01")                  # the 2nd APDU is still answered
        assert closed_by_card(fake)                             # ... then the card is pulled
        deadline = time.monotonic() + 5
        while card.calls[-1] != "off" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.inserted and card.calls[-1] == "off"  # out of the reader = no power (§4.5)
        assert no_connection_for(fake, 0.5)                     # and it stays out
        server.insert()
        fake.accept()
        fake.send(b"\x01")
        assert fake.exchange(b"\x00\xA4\x00\x00")[-2:] == b"\x90\x00"
        assert server.apdus == 3 and server.inserted           # once: no second eject at 4
    finally:
        server.stop()
        thread.join(5)
    assert not thread.is_alive()


def test_eject_while_not_connected_and_bad_eject_after(fake):
    with pytest.raises(ValueError):
        VpcdServer(RecordingCard(), "127.0.0.1", fake.port, eject_after=0)
    server = VpcdServer(RecordingCard(), "127.0.0.1", fake.port, backoff_start=0.02, backoff_max=0.1)
    server.eject()
    thread = server.serve_in_thread()
    try:
        assert no_connection_for(fake, 0.4)
        server.insert()
        fake.accept()
    finally:
        server.stop()
        thread.join(5)


def _port_pair():
    for _ in range(50):
        first = FakeVpcd()
        try:
            second = FakeVpcd(first.port + 1)
        except OSError:
            first.close()
            continue
        return first, second
    pytest.skip("no two consecutive free TCP ports")


def test_serve_two_cards_sigusr1_pulls_sigusr2_inserts(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path, persona in ((a, "adult"), (b, "under15")):
        assert run("card", "create", "--persona", persona, "-o", path, "--seed", "1").exit_code == 0
    first, second = _port_pair()
    proc = subprocess.Popen([sys.executable, "-m", "mynaemu", "card", "serve", a, b, "--port", str(first.port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for fake in (first, second):
            fake.accept(30)
            assert fake.exchange(b"\x04") == bytes.fromhex("3BE000FF8131FE4514")
        proc.send_signal(signal.SIGUSR1)
        assert closed_by_card(first) and closed_by_card(second)
        assert no_connection_for(first, 0.4) and proc.poll() is None
        proc.send_signal(signal.SIGUSR2)
        for fake in (first, second):
            fake.accept(10)
            fake.send(b"\x01")
            assert fake.exchange(SELECT_JPKI) == b"\x90\x00"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        err = proc.stderr.read().decode()
        assert "Virtual PCD 00 00" in err or str(first.port) in err
        assert "pulled out" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        first.close()
        second.close()


def test_serve_usage_errors(tmp_path):
    a = tmp_path / "a.json"
    assert run("card", "create", "--persona", "adult", "-o", a, "--seed", "1").exit_code == 0
    b = tmp_path / "b.json"
    b.write_bytes(a.read_bytes())
    assert run("card", "serve", a, a).exit_code == 2
    assert run("card", "serve", a, b, "--record", tmp_path / "r.txt").exit_code == 2
    assert run("card", "serve", a, "--eject-after", "0").exit_code == 2
    assert run("card", "serve", a, "--timing", "slow").exit_code == 2


# -- through pcscd --------------------------------------------------------------------------

@pytest.fixture
def pcsc_ready():
    from tests.support import pcsc_env
    from mynaemu.tools.harness import pcscd as pcscd_ctl

    pcsc_env.skip_unless_installed()
    daemon = pcsc_env.bring_up_pcscd()
    for port in (pcscd_ctl.VPCD_PORT, pcscd_ctl.VPCD_PORT + 1):
        if pcscd_ctl.reader_state(pcscd_ctl.reader_for_port(port))[0]:
            daemon.stop()
            pytest.skip(f"{pcscd_ctl.reader_for_port(port)!r} already holds a card (another user's)")
    yield pcscd_ctl
    daemon.stop()


def _serve(paths, *extra):
    return subprocess.Popen([sys.executable, "-m", "mynaemu", "card", "serve", *map(str, paths), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc, ctl):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for port in (ctl.VPCD_PORT, ctl.VPCD_PORT + 1):
        try:
            ctl.wait_for_card(False, reader=ctl.reader_for_port(port), timeout=10)
        except ctl.PcscdError:
            pass
    time.sleep(0.45)      # pcscd registers a removal ~0.4 s after reporting it (pcscd_ctl)


@pytest.mark.pcsc
def test_two_cards_in_two_readers_and_pull_and_insert_seen_by_pyscard(pcsc_ready, tmp_path):
    from tests.support import pcsc_env
    from mynaemu.tools.terminal.client import PcscConnection

    ctl = pcsc_ready
    a, b = pcsc_env.create_persona("adult", tmp_path / "a.json"), pcsc_env.create_persona("under15", tmp_path / "b.json")
    proc = _serve([a, b])
    try:
        for port in (ctl.VPCD_PORT, ctl.VPCD_PORT + 1):
            ctl.wait_for_card(True, reader=ctl.reader_for_port(port), timeout=30)
        listed = pcsc_env.run_tool(["opensc-tool", "--list-readers"]).stdout
        for line in [ln for ln in listed.splitlines() if "Virtual PCD" in ln]:
            assert "Yes" in line, listed                       # card present in both readers
        assert sum("Virtual PCD 00 0" in ln for ln in listed.splitlines()) >= 2
        proc.send_signal(signal.SIGUSR1)
        for port in (ctl.VPCD_PORT, ctl.VPCD_PORT + 1):
            ctl.wait_for_card(False, reader=ctl.reader_for_port(port), timeout=10)
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR2)
        ctl.wait_for_card(True, reader=ctl.READER, timeout=20)
        conn = PcscConnection(ctl.READER)
        try:
            assert conn.transmit(SELECT_JPKI)[-2:] == b"\x90\x00"
        finally:
            conn.close()
    finally:
        _stop(proc, ctl)


@pytest.mark.pcsc
def test_eject_after_seen_by_pyscard_and_record_replays(pcsc_ready, tmp_path):
    from tests.support import pcsc_env
    from mynaemu.tools.terminal.client import CardClient, PcscConnection

    ctl = pcsc_ready
    card = pcsc_env.create_persona("adult", tmp_path / "a.json")
    record = tmp_path / "session.txt"
    proc = _serve([card], "--record", record, "--eject-after", "6")
    try:
        ctl.wait_for_card(True, reader=ctl.READER, timeout=30)
        conn = PcscConnection(ctl.READER)
        client = CardClient(conn)
        assert client.jpki_token() == "JPKIAPICCTOKEN2"           # 3 APDUs
        client.select_ef(0x0018)                                  # 4
        client.verify(0x0018, "1234")                             # 5, 6: the 6th pulls the card
        ctl.wait_for_card(False, reader=ctl.READER, timeout=10)
        conn.close()
    finally:
        _stop(proc, ctl)
    text = record.read_text(encoding="utf-8")
    assert "{AUTH_PIN}" in text and "31 32 33 34" not in text
    result = run("card", "script", record, "--card", card)
    assert result.exit_code == 0, result.output + result.stderr
    assert "6 exchanges" in result.output


@pytest.mark.pcsc
def test_card_script_on_a_reader(pcsc_ready, tmp_path):
    from tests.support import pcsc_env
    from pathlib import Path

    ctl = pcsc_ready
    card = pcsc_env.create_persona("adult", tmp_path / "a.json")
    proc = _serve([card])
    try:
        ctl.wait_for_card(True, reader=ctl.READER, timeout=30)
        vectors = REPO / "vectors" / "transcripts"
        result = run("card", "script", vectors / "osc_read_auth_cert.txt", vectors / "neg_pin_block.txt",
                     "--reader", ctl.READER, "--set", "AUTH_PIN=1234", "--set", "SIGN_PIN=ABC123")
        assert result.exit_code == 0, result.output + result.stderr
        assert "on reader Virtual PCD 00 00" in result.output
    finally:
        _stop(proc, ctl)


def test_control_fifo_pulls_one_card_of_two(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path in (a, b):
        assert run("card", "create", "--persona", "adult", "-o", path, "--seed", "1").exit_code == 0
    control = tmp_path / "ctl"
    first, second = _port_pair()
    proc = subprocess.Popen([sys.executable, "-m", "mynaemu", "card", "serve", a, b, "--port", str(first.port),
                             "--control", control], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for fake in (first, second):
            fake.accept(30)
            fake.send(b"\x01")
        import stat as _stat
        assert _stat.S_ISFIFO(os.lstat(control).st_mode) and _stat.S_IMODE(os.lstat(control).st_mode) == 0o600
        with open(control, "w") as ctl:
            ctl.write("bogus line\neject 7\neject 1\n")
        assert closed_by_card(second)
        assert first.exchange(SELECT_JPKI) == b"\x90\x00"          # the other card stays in
        assert no_connection_for(second, 0.4)
        with open(control, "w") as ctl:
            ctl.write("insert 1\n")
        second.accept(10)
        second.send(b"\x01")
        assert second.exchange(SELECT_JPKI) == b"\x90\x00"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        err = proc.stderr.read().decode()
        assert "ignored 'bogus line'" in err and "no card '7'" in err
        assert not control.exists()                                # made by serve, removed by serve
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        first.close()
        second.close()


def test_control_path_that_is_not_a_fifo_is_refused(tmp_path):
    a = tmp_path / "a.json"
    assert run("card", "create", "--persona", "adult", "-o", a, "--seed", "1").exit_code == 0
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(victim)
    for path in (victim, link):
        result = run("card", "serve", a, "--control", path, "--port", "1")
        assert result.exit_code == 1 and "not a FIFO" in result.stderr
    assert victim.read_text() == "keep"


def test_eject_landing_while_the_door_connects_still_pulls_the_card(monkeypatch):
    """An eject that arrives after vpcd accepted the connection but before the door has made
    its socket visible (the gap a --control line or SIGUSR1 can hit) must still pull the card:
    the door looks at the flag again once the socket is visible."""
    import socket as _socket

    from mynaemu.card.core import Card
    from mynaemu.card.transport import vpcd
    from mynaemu.issuance.personas import build_persona

    image, _ = build_persona("adult", seed=1)
    listener = _socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    server = vpcd.VpcdServer(Card(image), "127.0.0.1", listener.getsockname()[1], log=lambda line: None)
    real_connect = _socket.create_connection

    def connect_then_eject(*args, **kwargs):
        sock = real_connect(*args, **kwargs)
        server.eject()                      # lands before the door sets server._sock
        return sock

    monkeypatch.setattr(vpcd.socket, "create_connection", connect_then_eject)
    server.serve_in_thread()
    try:
        listener.settimeout(10)
        conn, _ = listener.accept()
        conn.settimeout(5)
        assert conn.recv(1) == b""          # closed by the card: it is out of the reader
        conn.close()
    finally:
        server.stop()
        listener.close()
