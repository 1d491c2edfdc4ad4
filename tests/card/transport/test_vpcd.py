"""Protocol tests of the vpcd door against a fake vpcd (a TCP listener in the test, port 0).

Covers pcsc.md's protocol facts: framing, control bytes 00/01/02 without reply, get-ATR,
APDU round trips, reconnect after the listener restarts, power-off clearing security status
(spec §4.5), TCP_NODELAY/TCP_QUICKACK (the 40 ms stall), prompt stop(), PIN redaction in logs.
No pcscd is needed.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from mynaemu.card.core import Card
from mynaemu.card.image import Application, BinaryEF, CardImage, PinEF
from mynaemu.card.transport.vpcd import VpcdServer, frame, redact_apdu
from tests.support import REPO

AID_JPKI = bytes.fromhex("D392F000260100000001")
CONTACT_ATR = bytes.fromhex("3BE000FF8131FE4514")


# -- helpers ------------------------------------------------------------------------------------

class FakeVpcd:
    """The listening side of vpcd: accepts the card and speaks the framed protocol to it.

    `split=True` writes length and payload with two send() calls, as bookworm's vpcd does, with
    Nagle left on - the pattern that stalls 40 ms per message without the card's fixes.
    """

    def __init__(self, port: int = 0, split: bool = True):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.split = split
        self.conn = None

    def accept(self, timeout: float = 5.0) -> None:
        self.listener.settimeout(timeout)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(timeout)

    def send(self, payload: bytes) -> None:
        if self.split:
            self.conn.send(len(payload).to_bytes(2, "big"))
            self.conn.send(payload)
        else:
            self.conn.sendall(frame(payload))

    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("card closed the connection")
            buf += chunk
        return buf

    def recv(self) -> bytes:
        length = int.from_bytes(self.recv_exact(2), "big")
        return self.recv_exact(length)

    def nothing_pending(self, wait: float = 0.2) -> bool:
        ready, _, _ = select.select([self.conn], [], [], wait)
        return not ready

    def exchange(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.recv()

    def close(self) -> None:
        for s in (self.conn, self.listener):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


class RecordingCard:
    """A card double that records the door's calls (control bytes map to these methods)."""

    atr = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")

    def __init__(self):
        self.calls = []
        self.powered = False

    def power_on(self):
        self.calls.append("on")
        self.powered = True
        return self.atr

    def power_off(self):
        self.calls.append("off")
        self.powered = False

    def reset(self, warm=True):
        self.calls.append("warm" if warm else "cold")
        return self.atr

    def transmit(self, apdu):
        self.calls.append(("apdu", bytes(apdu)))
        # Echo the APDU back in the data so the test can check exact bytes, then 9000.
        return bytes(apdu) + b"\x90\x00"


def jpki_card() -> Card:
    """A small real card: JPKI AP with PIN 0018 and an EF readable only after it (spec §3.1)."""
    app = Application("jpki", AID_JPKI, {})
    app.add(PinEF(0x0018, b"1234", 3, 3, "[0-9]{4}"))
    app.add(BinaryEF(0x000A, bytes.fromhex("3003020105")))
    app.add(BinaryEF(0x0001, bytes.fromhex("3003020107"), read=(0x0018,)))
    return Card(CardImage([app], label="vpcd-test"))


@pytest.fixture
def fake():
    f = FakeVpcd()
    yield f
    f.close()


@pytest.fixture
def serve():
    """Start a VpcdServer for (card, port) in a thread; stopped and joined after the test."""
    started = []

    def _serve(card, port, **kw):
        kw.setdefault("backoff_start", 0.02)
        kw.setdefault("backoff_max", 0.1)
        server = VpcdServer(card, "127.0.0.1", port, **kw)
        thread = server.serve_in_thread()
        started.append((server, thread))
        return server

    yield _serve
    for server, thread in started:
        server.stop()
        thread.join(5)
        assert not thread.is_alive(), "serve_forever did not return after stop()"


def sw(resp: bytes) -> str:
    return resp[-2:].hex().upper()


# -- framing and control ------------------------------------------------------------------------

def test_frame_encoding():
    assert frame(b"\x04") == b"\x00\x01\x04"
    assert frame(bytes(300))[:2] == b"\x01\x2c"
    with pytest.raises(ValueError):
        frame(bytes(65536))


def test_get_atr_answered_even_before_power_on(fake, serve):
    card = RecordingCard()
    serve(card, fake.port)
    fake.accept()
    assert fake.exchange(b"\x04") == card.atr
    assert card.calls == []          # get-ATR is not a power-on


def test_control_bytes_get_no_reply_and_drive_the_card(fake, serve):
    card = RecordingCard()
    serve(card, fake.port)
    fake.accept()
    for code, call in ((b"\x01", "on"), (b"\x02", "warm"), (b"\x00", "off")):
        fake.send(code)
        assert fake.nothing_pending(), f"control byte {code.hex()} was answered"
        assert card.calls[-1] == call
    # An unknown control byte is ignored, not answered, and does not kill the connection.
    fake.send(b"\x03")
    assert fake.nothing_pending()
    assert fake.exchange(b"\x04") == card.atr


def test_apdu_round_trip_exact_bytes(fake, serve):
    card = RecordingCard()
    serve(card, fake.port)
    fake.accept()
    fake.send(b"\x01")
    apdu = bytes.fromhex("00A4040C0A") + AID_JPKI
    assert fake.exchange(apdu) == apdu + b"\x90\x00"
    # An extended APDU larger than a short one passes through whole (pcsc.md).
    big = bytes.fromhex("802A0080000400") + bytes(range(256)) * 4 + b"\x00\x00"
    assert fake.exchange(big) == big + b"\x90\x00"
    assert card.calls[-1] == ("apdu", big)


def test_message_split_across_many_segments(fake, serve):
    card = RecordingCard()
    serve(card, fake.port)
    fake.accept()
    apdu = bytes.fromhex("00B0000000")
    data = frame(apdu)
    for byte in data:                 # one byte per send: the reader must reassemble
        fake.conn.send(bytes([byte]))
        time.sleep(0.005)
    assert fake.recv() == apdu + b"\x90\x00"


def test_real_card_through_the_door(fake, serve):
    card = jpki_card()
    serve(card, fake.port)
    fake.accept()
    fake.send(b"\x01")
    assert fake.exchange(b"\x04") == CONTACT_ATR
    assert sw(fake.exchange(bytes.fromhex("00A4040C0A") + AID_JPKI)) == "9000"
    # Foreign AIDs must fail (OpenSC's probing drivers, pcsc.md).
    assert sw(fake.exchange(bytes.fromhex("00A4040C09A00000030800001000"))) == "6A82"
    assert sw(fake.exchange(bytes.fromhex("00A4040C0A") + AID_JPKI)) == "9000"
    assert sw(fake.exchange(bytes.fromhex("00A4020C02000A"))) == "9000"
    assert fake.exchange(bytes.fromhex("00B0000000")) == bytes.fromhex("30030201059000")


def test_apdu_while_unpowered_answers_empty_and_keeps_connection(fake, serve):
    card = jpki_card()               # the core refuses transmit() without power
    serve(card, fake.port)
    fake.accept()
    assert fake.exchange(bytes.fromhex("00A4040C0A") + AID_JPKI) == b""
    fake.send(b"\x01")
    assert sw(fake.exchange(bytes.fromhex("00A4040C0A") + AID_JPKI)) == "9000"


# -- security status and connection life -------------------------------------------------------

def _login_and_read(fake) -> str:
    assert sw(fake.exchange(bytes.fromhex("00A4040C0A") + AID_JPKI)) == "9000"
    assert sw(fake.exchange(bytes.fromhex("00A4020C020018"))) == "9000"
    assert sw(fake.exchange(bytes.fromhex("0020008004") + b"1234")) == "9000"
    assert sw(fake.exchange(bytes.fromhex("00A4020C020001"))) == "9000"
    return sw(fake.exchange(bytes.fromhex("00B0000000")))


def _read_protected(fake) -> str:
    assert sw(fake.exchange(bytes.fromhex("00A4040C0A") + AID_JPKI)) == "9000"
    assert sw(fake.exchange(bytes.fromhex("00A4020C020001"))) == "9000"
    return sw(fake.exchange(bytes.fromhex("00B0000000")))


def test_power_off_clears_security_status(fake, serve):
    card = jpki_card()
    serve(card, fake.port)
    fake.accept()
    fake.send(b"\x01")
    assert _login_and_read(fake) == "9000"
    fake.send(b"\x02")               # warm reset keeps verified status (spec §4.5)
    assert _read_protected(fake) == "9000"
    fake.send(b"\x00")
    fake.send(b"\x01")
    assert _read_protected(fake) == "6982"


def test_reconnect_after_listener_restart_and_power_off_while_away(fake, serve):
    card = jpki_card()
    server = serve(card, fake.port)
    fake.accept()
    fake.send(b"\x01")
    assert _login_and_read(fake) == "9000"
    port = fake.port
    fake.close()                      # pcscd goes away
    deadline = time.monotonic() + 5
    while server.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server.connected
    assert card.powered is False      # out of the reader: no power (spec §4.5)
    time.sleep(0.3)                   # a few refused reconnect attempts
    again = FakeVpcd(port)            # pcscd is back on the same port
    try:
        again.accept()
        assert again.exchange(b"\x04") == CONTACT_ATR
        again.send(b"\x01")
        assert _read_protected(again) == "6982"     # the old login did not survive
        assert server.connections == 2
    finally:
        again.close()


def test_zero_length_frame_drops_and_reconnects(fake, serve):
    card = RecordingCard()
    server = serve(card, fake.port)
    fake.accept()
    fake.conn.sendall(b"\x00\x00")
    fake.accept()                     # the door reconnected after the protocol error
    assert fake.exchange(b"\x04") == card.atr
    assert server.connections == 2
    assert "off" in card.calls


def test_stop_is_prompt_while_connected_and_while_retrying(fake):
    card = RecordingCard()
    server = VpcdServer(card, "127.0.0.1", fake.port)
    thread = server.serve_in_thread()
    fake.accept()
    assert server.wait_connected(5)
    t0 = time.monotonic()
    server.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - t0 < 1.0
    assert card.calls[-1] == "off"

    # Nothing listening: the door is sleeping in its backoff; stop() must still be prompt.
    port = fake.port
    fake.close()
    server = VpcdServer(card, "127.0.0.1", port, backoff_start=1.5, backoff_max=1.5)
    thread = server.serve_in_thread()
    time.sleep(0.2)
    t0 = time.monotonic()
    server.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - t0 < 1.0


def test_bad_constructor_arguments():
    with pytest.raises(ValueError):
        VpcdServer(RecordingCard(), port=0)
    with pytest.raises(ValueError):
        VpcdServer(RecordingCard(), port=35963, backoff_start=2, backoff_max=1)


# -- the 40 ms stall ----------------------------------------------------------------------------

def test_nodelay_and_quickack_are_set(fake, serve, monkeypatch):
    calls = []
    real = VpcdServer._quickack

    def spy(sock):
        calls.append(time.monotonic())
        real(sock)

    monkeypatch.setattr(VpcdServer, "_quickack", staticmethod(spy))
    card = RecordingCard()
    server = serve(card, fake.port)
    fake.accept()
    assert server.wait_connected(5)
    assert server._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    before = len(calls)
    for _ in range(10):
        fake.exchange(b"\x04")
    # Each message is read with two recv() calls (length, payload): quick-ack after each.
    assert len(calls) - before >= 20


def test_no_40ms_stall_with_split_writes(fake, serve):
    """bookworm's vpcd sends length and payload separately; 100 round trips must not take 4 s."""
    card = RecordingCard()
    serve(card, fake.port)
    fake.accept()
    fake.send(b"\x01")
    apdu = bytes.fromhex("00B0000000")
    fake.exchange(apdu)
    t0 = time.perf_counter()
    for _ in range(100):
        fake.exchange(apdu)
    elapsed = time.perf_counter() - t0
    # With the fixes each exchange takes ~0.1 ms; a stall costs ~40 ms each (pcsc.md).
    assert elapsed < 1.0, f"100 APDUs took {elapsed:.2f} s: the 40 ms stall is back"


# -- logs ---------------------------------------------------------------------------------------

def test_redact_apdu_hides_pin_data():
    verify = bytes.fromhex("0020008004") + b"1234"
    assert "31323334" not in redact_apdu(verify)
    change = bytes.fromhex("0024018006") + b"ABC123"
    assert b"ABC123".hex().upper() not in redact_apdu(change)
    change_key = bytes.fromhex("8032008004") + b"9876"
    assert b"9876".hex().upper() not in redact_apdu(change_key)
    # The retry query has no data and is shown whole; other commands are shown whole.
    assert redact_apdu(bytes.fromhex("00200080")) == "00200080"
    assert redact_apdu(bytes.fromhex("00A4020C020018")) == "00A4020C020018"


def test_log_lines_never_show_pins_or_response_data(fake, serve):
    lines = []
    card = jpki_card()
    card.image.application("jpki").add(BinaryEF(0x0006, b"123456789012"))   # 12 digits
    serve(card, fake.port, log=lines.append)
    fake.accept()
    fake.send(b"\x01")
    fake.exchange(bytes.fromhex("00A4040C0A") + AID_JPKI)
    fake.exchange(bytes.fromhex("00A4020C020018"))
    fake.exchange(bytes.fromhex("0020008004") + b"9999")
    fake.exchange(bytes.fromhex("00A4020C020006"))
    assert fake.exchange(bytes.fromhex("00B0000000")).startswith(b"123456789012")
    text = "\n".join(lines)
    assert "39393939" not in text and "9999" not in text
    assert "313233343536373839303132" not in text
    assert "00A4020C020018" in text       # the log is not simply empty


# -- run() and signals --------------------------------------------------------------------------

def test_run_stops_on_sigterm(fake):
    code = textwrap.dedent(f"""
        import sys
        from tests.card.transport.test_vpcd import RecordingCard
        from mynaemu.card.transport.vpcd import run
        sys.exit(run(RecordingCard(), "127.0.0.1", {fake.port}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)  # REPO on the path: `tests` is a package
    try:
        fake.accept(10)
        assert fake.exchange(b"\x04") == RecordingCard.atr
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert time.monotonic() - t0 < 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()



# -- pcscd_ctl helpers that need no pcscd ---------------------------------------------------------

def test_listening_ports_read_from_proc_without_connecting():
    from mynaemu.tools.harness import pcscd as pcscd_ctl

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        assert port in pcscd_ctl.listening_ports()
        assert pcscd_ctl.vpcd_listening(port)
    finally:
        listener.close()
    assert port not in pcscd_ctl.listening_ports()


def test_reader_for_port():
    from mynaemu.tools.harness import pcscd as pcscd_ctl

    assert pcscd_ctl.reader_for_port(35963) == "Virtual PCD 00 00"
    assert pcscd_ctl.reader_for_port(35964) == "Virtual PCD 00 01"
    with pytest.raises(ValueError):
        pcscd_ctl.reader_for_port(35965)
