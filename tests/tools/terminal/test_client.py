"""The terminal-side client: typed operations, errors and the exact APDUs it sends (spec §10).

Runs against in-process persona cards; the PC/SC door is tested with a stand-in pyscard
module, and once for real through pcscd + vpcd when that is available (marker `pcsc`).
"""
from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import sys
import types

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mynaemu.card.core import Card
from mynaemu.tools.terminal import client as C
from mynaemu.tools.terminal.client import (
    CardClient, CardDataError, CardError, InProcessConnection, NotFound, PinBlocked, PinIncorrect,
    SecurityStatusNotSatisfied, TransportError,
)

SHA256_DI = bytes.fromhex("3031300d060960864801650304020105000420")
AID_J = "D3 92 F0 00 26 01 00 00 00 01"


@pytest.fixture(scope="module")
def adult():
    from mynaemu.issuance.personas import build_persona
    return build_persona("adult", seed=0)


@pytest.fixture
def card(adult):
    return Card(copy.deepcopy(adult[0]))


@pytest.fixture
def info(adult):
    return adult[1]


@pytest.fixture
def cl(card):
    conn = InProcessConnection(card)
    yield CardClient(conn, trace=True)
    conn.close()


def sent(cl) -> list[str]:
    return [c for c, _ in cl.trace]


def ef_data(image, aid: bytes, fid: int) -> bytes:
    return next(a for a in image.applications if a.aid == aid).efs[fid].data


def di256(message: bytes) -> bytes:
    return SHA256_DI + hashlib.sha256(message).digest()


# -- selection ------------------------------------------------------------------------------

def test_select_ap_sends_select_by_df_name_with_p2_0c(cl):
    cl.select_ap("jpki")
    cl.select_ap("KENHOJO")
    cl.select_ap("D3921000310001010402")
    cl.select_ap(bytes.fromhex("D3921000310001010100"))
    assert sent(cl) == [
        "00 A4 04 0C 0A " + AID_J,
        "00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 08",
        "00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 02",
        "00 A4 04 0C 0A D3 92 10 00 31 00 01 01 01 00",
    ]
    assert cl.trace[0][1] == "90 00"


def test_select_isd_and_juki(cl):
    cl.select_ap("isd")
    cl.select_ap("juki")
    assert sent(cl) == ["00 A4 04 0C 07 A0 00 00 01 51 00 00",
                        "00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 01"]


def test_foreign_aid_raises_not_found(cl):
    with pytest.raises(NotFound) as err:
        cl.select_ap("A000000308000010000100")
    assert err.value.sw == 0x6A82
    assert "SELECT A000000308000010000100" in str(err.value)


def test_bad_application_names_are_refused_before_sending(cl):
    with pytest.raises(ValueError, match="unknown application 'pivx'"):
        cl.select_ap("pivx")
    with pytest.raises(ValueError, match="1..16 bytes"):
        cl.select_ap(b"\x01" * 17)
    with pytest.raises(ValueError):
        cl.select_ef(0x10000)
    assert cl.trace == []


def test_select_ef_and_unknown_fid(cl):
    cl.select_ap("jpki")
    cl.select_ef(0x000A)
    assert sent(cl)[-1] == "00 A4 02 0C 02 00 0A"
    with pytest.raises(NotFound):
        cl.select_ef(0x2F10)


# -- reading --------------------------------------------------------------------------------

def test_jpki_token(cl):
    assert cl.jpki_token() == "JPKIAPICCTOKEN2"
    assert sent(cl) == ["00 A4 04 0C 0A " + AID_J, "00 A4 02 0C 02 00 06", "00 B0 00 00 20"]


def test_read_certificate_auth_probes_then_reads_256_byte_chunks(cl, adult):
    image, _ = adult
    der = cl.read_certificate("auth")
    cert = x509.load_der_x509_certificate(der)
    assert der == ef_data(image, C.AIDS["jpki"], 0x000A)[:len(der)]
    assert cert.serial_number == adult[1].auth_serial
    reads = [c for c in sent(cl) if c.startswith("00 B0")]
    assert reads[0] == "00 B0 00 00 07"                       # BER header probe (§10.2)
    offsets = list(range(7, len(der), 256))
    expect = [f"00 B0 {o >> 8:02X} {o & 0xFF:02X} {min(256, len(der) - o) % 256:02X}" for o in offsets]
    assert reads[1:] == expect


def test_read_certificate_extended_uses_one_extended_le(card):
    conn = InProcessConnection(card)
    cl = CardClient(conn, extended=True, trace=True)
    der = cl.read_certificate("auth_ca")
    x509.load_der_x509_certificate(der)
    reads = [c for c in sent(cl) if c.startswith("00 B0")]
    rest = len(der) - 7
    assert reads == ["00 B0 00 00 07", f"00 B0 00 07 00 {rest >> 8:02X} {rest & 0xFF:02X}"]


def test_signing_certificate_needs_the_signing_password(cl, info):
    with pytest.raises(SecurityStatusNotSatisfied) as err:
        cl.read_certificate("sign")
    assert err.value.sw == 0x6982
    # lower case is upper-cased as MYNA/PYMYNA do (§4.1)
    der = cl.read_certificate("sign", pin=info.pins["sign"].lower())
    cert = x509.load_der_x509_certificate(der)
    assert cert.serial_number == info.sign_serial
    assert "00 20 00 80 06 ****" in sent(cl)


def test_read_certificate_rejects_unknown_kind(cl):
    with pytest.raises(ValueError, match="auth, sign, auth_ca, sign_ca"):
        cl.read_certificate("root")


def test_read_binary_whole_ef_short_chunks_and_sfi(cl):
    cl.select_ap("jpki")
    token = cl.read_binary(0x0006)
    assert len(token) == 160 and token.startswith(b"JPKIAPICCTOKEN2 ")
    assert sent(cl)[-1] == "00 B0 00 00 00"                    # Le=00 → 256, short answer ends
    assert cl.read_binary(sfi=0x08) == b"\x8f\x8f\x00"
    assert sent(cl)[-1] == "00 B0 88 00 00"
    assert cl.read_binary(0x0006, length=20) == b"JPKIAPICCTOKEN2" + b" " * 5
    assert sent(cl)[-1] == "00 B0 00 00 14"
    with pytest.raises(ValueError, match="fid or sfi"):
        cl.read_binary(0x0006, sfi=6)


def test_read_binary_of_a_long_ef_reads_to_the_end(cl, adult):
    image, _ = adult
    cl.select_ap("jpki")
    whole = cl.read_binary(0x000A)
    assert whole == ef_data(image, C.AIDS["jpki"], 0x000A)
    assert all(c.endswith(" 00") for c in sent(cl) if c.startswith("00 B0"))


def test_read_binary_extended(card, adult):
    conn = InProcessConnection(card)
    cl = CardClient(conn, extended=True, trace=True)
    cl.select_ap("jpki")
    assert cl.read_binary(sfi=0x0A) == ef_data(adult[0], C.AIDS["jpki"], 0x000A)
    assert sent(cl)[-1] == "00 B0 8A 00 00 00 00"


class Scripted:
    """A connection that answers from a script and records what it was sent."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    def transmit(self, apdu):
        self.sent.append(bytes(apdu))
        return self.answers.pop(0)

    def close(self):
        pass


def test_read_binary_stops_on_6b00_after_a_full_chunk():
    conn = Scripted([b"\x11" * 256 + b"\x90\x00", b"\x22" * 256 + b"\x90\x00", b"\x6b\x00"])
    data = CardClient(conn).read_binary()
    assert data == b"\x11" * 256 + b"\x22" * 256
    assert [a.hex().upper() for a in conn.sent] == ["00B0000000", "00B0010000", "00B0020000"]


def test_read_binary_6b00_at_offset_0_is_an_error():
    conn = Scripted([b"\x6b\x00"])
    with pytest.raises(CardError) as err:
        CardClient(conn).read_binary()
    assert err.value.sw == 0x6B00


def test_read_object_reports_a_short_ef():
    conn = Scripted([b"\x30\x82\x01\x00\x01\x02\x03\x90\x00", b"\x90\x00"])
    with pytest.raises(CardDataError, match="ended at 7 of 260"):
        CardClient(conn).read_object()


def test_read_record_and_card_info(cl, info):
    card_info = cl.read_card_info()
    assert card_info["municipality_code"] == info.identity.municipality_code
    assert card_info["expiry"] == info.card_expiry
    assert len(card_info["serial"]) == 15 and card_info["serial"].isdigit()
    assert sent(cl) == ["00 A4 04 0C 0A D3 92 10 00 31 00 01 01 01 00", "00 B2 01 0C 00"]
    with pytest.raises(NotFound) as err:
        cl.read_record(9, sfi=1)
    assert err.value.sw == 0x6A83
    with pytest.raises(ValueError):
        cl.read_record(0)


# -- PINs -----------------------------------------------------------------------------------

def test_verify_and_retry_query(cl, info):
    cl.select_ap("jpki")
    assert cl.tries_left(0x0018) == 3
    assert cl.tries_left(0x001B) == 5
    cl.verify(0x0018, info.pins["auth"])
    # §4.2 / OSC-959: still 63C3 after a successful VERIFY
    assert cl.tries_left(0x0018) == 3
    assert cl.tries_left(0x0018, sfi=True) == 3
    assert sent(cl)[-1] == "00 20 00 98"
    assert "00 20 00 80 04 ****" in sent(cl)
    assert "00 20 00 80" in sent(cl)


def test_wrong_pins_count_down_then_block(cl, info):
    cl.select_ap("jpki")
    for left in (2, 1):
        with pytest.raises(PinIncorrect) as err:
            cl.verify(0x0018, "0000" if info.pins["auth"] != "0000" else "1111")
        assert err.value.tries_left == left and err.value.sw == 0x63C0 | left
    with pytest.raises(PinBlocked) as err:
        cl.verify(0x0018, "0000" if info.pins["auth"] != "0000" else "1111")
    assert err.value.sw == 0x63C0 and err.value.tries_left == 0
    with pytest.raises(PinBlocked) as err:
        cl.verify(0x0018, info.pins["auth"])
    assert err.value.sw == 0x6984
    assert cl.tries_left(0x0018) == 0


def test_tries_left_refuses_a_9000_answer():
    conn = Scripted([b"\x90\x00", b"\x90\x00"])
    with pytest.raises(CardError, match="expected 63Cn"):
        CardClient(conn).tries_left(0x0018)


def test_change_pin_iso_and_jicsap(cl, info):
    cl.select_ap("jpki")
    cl.change_pin(0x0018, "5678", old=info.pins["auth"])
    assert sent(cl)[-1] == "00 24 01 80 04 ****"
    with pytest.raises(PinIncorrect):
        cl.verify(0x0018, info.pins["auth"] if info.pins["auth"] != "5678" else "1234")
    cl.verify(0x0018, "5678")
    cl.select_ap("common")
    cl.change_pin(0x001C, "4321", old=info.pins["juki"])
    assert sent(cl)[-1] == "80 32 00 80 04 ****"       # 共通AP: CHANGE KEY (§4.4)
    cl.verify(0x001C, "4321")


def test_change_pin_without_verify_is_refused(cl):
    cl.select_ap("jpki")
    with pytest.raises(SecurityStatusNotSatisfied):
        cl.change_pin(0x0018, "5678")


def test_pin_input_is_validated(cl):
    with pytest.raises(ValueError, match="non-empty"):
        cl.verify(0x0018, "")
    with pytest.raises(ValueError, match="ASCII"):
        cl.verify(0x0018, "１２３４")
    with pytest.raises(ValueError, match="no short identifier"):
        cl.verify(0x0100, "1234", sfi=True)


# -- signing and challenges -----------------------------------------------------------------

@pytest.mark.parametrize("kind, pin_key", [("auth", "auth"), ("sign", "sign")])
def test_jpki_sign_verifies_under_the_certificate(cl, info, kind, pin_key):
    message = b"mynaemu client test"
    sig = cl.jpki_sign(kind, di256(message), info.pins[pin_key])
    assert len(sig) == 256
    cert_kind = "auth" if kind == "auth" else "sign"
    der = cl.read_certificate(cert_kind)     # the sign cert is open: 001B was verified above
    key = x509.load_der_x509_certificate(der).public_key()
    key.verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    key_fid = "00 17" if kind == "auth" else "00 1A"
    assert f"00 A4 02 0C 02 {key_fid}" in sent(cl)
    signs = [c for c in sent(cl) if c.startswith("80 2A")]
    assert signs == ["80 2A 00 80 33 " + di256(message).hex(" ").upper() + " 00"]


def test_sign_without_pin_and_bad_scheme(cl, info):
    cl.select_ap("jpki")
    with pytest.raises(SecurityStatusNotSatisfied):
        cl.sign(0x0017, di256(b"x"))
    cl.verify(0x0018, info.pins["auth"])
    with pytest.raises(CardError) as err:
        cl.sign(0x0017, di256(b"x"), scheme=6)
    assert err.value.sw == 0x6A86
    sig = cl.sign(0x0017, di256(b"x"), sfi=True)
    assert len(sig) == 256 and sent(cl)[-1].startswith("80 2A 00 97 33 ")
    with pytest.raises(ValueError, match="1..255"):
        cl.sign(0x0017, b"")


def test_kenhojo_default_key_signs_a_challenge_without_pin(cl):
    cl.select_ap("kenhojo")
    challenge = cl.get_challenge(16)
    assert len(challenge) == 16 and sent(cl)[-1] == "00 84 00 00 10"
    sig = cl.sign(None, di256(challenge))
    assert len(sig) == 256 and sent(cl)[-1].startswith("80 2A 00 00 33 ")


def test_get_challenge_bounds(cl):
    with pytest.raises(ValueError):
        cl.get_challenge(0)
    with pytest.raises(ValueError):
        cl.get_challenge(257)


def test_internal_authenticate_common_ap_key(cl):
    cl.select_ap("common")
    sig = cl.internal_authenticate(0x0019, b"\x01" * 16)
    assert len(sig) == 256
    assert sent(cl)[-1] == "00 88 00 99 10 " + "01 " * 16 + "00"


def test_get_data_at_mf_level(cl, adult):
    image, info = adult
    assert cl.get_data(0x00F0) == image.get_data[0x00F0]
    assert sent(cl)[-1] == "00 CA 00 F0 00"
    with pytest.raises(NotFound):
        cl.get_data(0x0001)


# -- 券面事項入力補助AP -----------------------------------------------------------------------

def test_read_my_number_with_pin_and_with_shogo_a(cl, info):
    assert cl.read_my_number(info.pins["kenhojo"]) == info.identity.individual_number
    assert sent(cl)[-3:] == ["00 20 00 80 04 ****", "00 A4 02 0C 02 00 01", "00 B0 00 00 11"]
    assert cl.read_my_number(info.identity.individual_number, key=0x0014) == info.identity.individual_number


def test_read_basic4(cl, info):
    ident = info.identity
    basic = cl.read_basic4(info.pins["kenhojo"])
    assert basic == {"name": ident.name, "address": ident.address, "birth": ident.birth, "sex": ident.sex}
    cl.conn.reset(warm=False)                                   # fresh session: nothing verified
    assert cl.read_basic4(info.shogo_b, key=0x0015) == basic
    cl.conn.reset(warm=False)
    with pytest.raises(SecurityStatusNotSatisfied):
        cl.read_basic4(ident.individual_number, key=0x0014)     # 照合番号A does not open 0002


def test_trace_never_shows_pins_or_the_individual_number(cl, info):
    number = info.identity.individual_number
    cl.read_my_number(info.pins["kenhojo"])
    cl.read_my_number(number, key=0x0014)
    cl.read_certificate("sign", pin=info.pins["sign"])
    text = cl.format_trace()
    assert number not in text
    assert number.encode().hex(" ").upper() not in text
    assert info.pins["sign"].encode().hex(" ").upper() not in text
    assert "00 20 00 80 0C ****" in text
    assert "<17 bytes redacted> 90 00" in text
    assert text.startswith("> 00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 08\n< 90 00")


def test_parse_basic4_rejects_bad_layouts():
    good = (b"\xff\x20\x22" + b"\xdf\x21\x08" + bytes.fromhex("000E001200160021")
            + b"\xdf\x22\x01A" + b"\xdf\x23\x01B" + b"\xdf\x24\x0819800217" + b"\xdf\x25\x011")
    assert C.parse_basic4(good) == {"name": "A", "address": "B", "birth": _dt.date(1980, 2, 17), "sex": "1"}
    with pytest.raises(CardDataError, match="not FF20"):
        C.parse_basic4(b"\xff\x30" + good[2:])
    bad_offset = good[:6] + bytes.fromhex("000F") + good[8:]
    with pytest.raises(CardDataError, match="offset 15"):
        C.parse_basic4(bad_offset)
    with pytest.raises(CardDataError, match="YYYYMMDD"):
        C.parse_basic4(good.replace(b"19800217", b"19801317"))
    with pytest.raises(CardDataError, match="JIS X 0303"):
        C.parse_basic4(good[:-1] + b"7")


def test_parse_helpers():
    assert C.parse_my_number(b"\xff\x10\x0c123456789018\xff\xff") == "123456789018"
    with pytest.raises(CardDataError):
        C.parse_my_number(b"\xff\x10\x0c12345678901X\xff\xff")
    info = C.parse_card_info(b"\x01\x1c" + b"400000012719843" + b"13221" + b"20350217")
    assert info == {"serial": "400000012719843", "municipality_code": "13221",
                    "expiry": _dt.date(2035, 2, 17)}
    assert C.ber_header(bytes.fromhex("7F2182023300")) == (0x7F21, 5, 0x233)
    assert C.ber_header(bytes.fromhex("FF2065")) == (0xFF20, 3, 0x65)
    with pytest.raises(CardDataError):
        C.ber_header(bytes.fromhex("3080"))


@pytest.mark.parametrize("sw, cls", [
    (0x63C2, PinIncorrect), (0x63C0, PinBlocked), (0x6984, PinBlocked), (0x6983, PinBlocked),
    (0x6982, SecurityStatusNotSatisfied), (0x6A82, NotFound), (0x6A83, NotFound), (0x6A88, NotFound),
    (0x6B00, CardError), (0x6700, CardError),
])
def test_error_for_maps_status_words(sw, cls):
    err = C.error_for(sw, "X")
    assert type(err) is cls and err.sw == sw and str(err).startswith("X: ")
    assert f"SW {sw:04X}" in str(err)


# -- connections ----------------------------------------------------------------------------

def test_in_process_connection_power_and_reset(card, info):
    conn = InProcessConnection(card)
    assert conn.atr == card.atr
    cl = CardClient(conn)
    cl.select_ap("jpki")
    cl.verify(0x0018, info.pins["auth"])
    conn.reset(warm=True)                        # §4.5: warm reset keeps the status
    cl.select_ap("jpki")
    assert len(cl.sign(0x0017, di256(b"w"))) == 256
    conn.reset(warm=False)                       # power cycle clears it
    cl.select_ap("jpki")
    with pytest.raises(SecurityStatusNotSatisfied):
        cl.sign(0x0017, di256(b"w"))
    conn.close()
    assert not card.powered
    with pytest.raises(TransportError, match="closed"):
        conn.transmit(b"\x00\xa4\x04\x0c")


def _fake_pyscard(monkeypatch, readers):
    """Install a stand-in `smartcard` package: readers is [(name, atr or None if empty)]."""

    class SmartcardException(Exception):
        pass

    class NoCardException(SmartcardException):
        pass

    class Conn:
        def __init__(self, name, atr):
            self.name, self._atr, self.protocol, self.log = name, atr, None, []

        def connect(self, protocol=None, mode=None, disposition=None):
            if self._atr is None:
                raise NoCardException(f"no card in {self.name}")
            self.protocol = protocol

        def getATR(self):
            return list(self._atr)

        def transmit(self, apdu):
            self.log.append(bytes(apdu))
            return [0x01, 0x02], 0x90, 0x00

        def reconnect(self, protocol=None, mode=None, disposition=None):
            self.log.append(("reconnect", disposition))

        def disconnect(self):
            self.log.append("disconnect")

    class Reader:
        def __init__(self, name, atr):
            self.name, self.atr = name, atr
            self.conn = Conn(name, atr)

        def createConnection(self):
            return self.conn

        def __str__(self):
            return self.name

    objs = [Reader(n, a) for n, a in readers]
    pkg = types.ModuleType("smartcard")
    system = types.ModuleType("smartcard.System")
    system.readers = lambda: objs
    exceptions = types.ModuleType("smartcard.Exceptions")
    exceptions.SmartcardException = SmartcardException
    exceptions.NoCardException = NoCardException
    scard = types.ModuleType("smartcard.scard")
    scard.SCARD_RESET_CARD, scard.SCARD_UNPOWER_CARD = 1, 2
    cc = types.ModuleType("smartcard.CardConnection")
    cc.CardConnection = type("CardConnection", (), {"T0_protocol": 1, "T1_protocol": 2})
    pkg.System, pkg.Exceptions, pkg.scard, pkg.CardConnection = system, exceptions, scard, cc
    for name, mod in (("smartcard", pkg), ("smartcard.System", system), ("smartcard.Exceptions", exceptions),
                      ("smartcard.scard", scard), ("smartcard.CardConnection", cc)):
        monkeypatch.setitem(sys.modules, name, mod)
    return objs


def test_pcsc_connection_takes_the_first_reader_with_a_card_in_t1(monkeypatch):
    atr = bytes.fromhex("3BE000FF8131FE4514")
    readers = _fake_pyscard(monkeypatch, [("Empty Reader 00", None), ("Virtual PCD 00 00", atr)])
    assert C.list_readers() == ["Empty Reader 00", "Virtual PCD 00 00"]
    conn = C.PcscConnection()
    assert conn.reader == "Virtual PCD 00 00" and conn.atr == atr
    assert readers[1].conn.protocol == 2                     # T=1 (§1.1)
    assert conn.transmit(b"\x00\xb0\x00\x00\x02") == b"\x01\x02\x90\x00"
    conn.reset(warm=False)
    assert ("reconnect", 2) in readers[1].conn.log
    conn.close()
    conn.close()                                             # idempotent
    assert readers[1].conn.log.count("disconnect") == 1


def test_pcsc_connection_errors_are_one_line(monkeypatch):
    _fake_pyscard(monkeypatch, [("Virtual PCD 00 00", None), ("Virtual PCD 00 01", None)])
    with pytest.raises(TransportError, match=r"^no card in any reader \(readers: Virtual PCD 00 00, "):
        C.PcscConnection()
    with pytest.raises(TransportError, match="no reader named 'ACS'"):
        C.PcscConnection("ACS")
    with pytest.raises(TransportError, match="names 2 readers"):
        C.PcscConnection("Virtual PCD")
    with pytest.raises(TransportError, match="no card in reader 'Virtual PCD 00 01'"):
        C.PcscConnection("Virtual PCD 00 01")


def test_pcsc_connection_without_pyscard(monkeypatch):
    monkeypatch.setitem(sys.modules, "smartcard", None)
    with pytest.raises(TransportError, match=r"pyscard is not installed"):
        C.PcscConnection()
    with pytest.raises(TransportError, match=r"pyscard is not installed"):
        C.list_readers()


@pytest.mark.pcsc
def test_real_pcsc_round_trip(tmp_path, adult):
    """The same client through pcscd + vpcd (pcsc.md), when this machine can run them."""
    from mynaemu.tools.harness import pcscd as pcscd_ctl

    try:
        daemon = pcscd_ctl.ensure_pcscd()
    except pcscd_ctl.PcscdError as exc:
        pytest.skip(str(exc))
    port = pcscd_ctl.VPCD_PORT + 1
    try:
        server = pcscd_ctl.start_card_server(tmp_path / "card.json", port=port,
                                             card=Card(copy.deepcopy(adult[0])))
    except pcscd_ctl.PcscdError as exc:
        daemon.stop()
        pytest.skip(str(exc))
    try:
        conn = C.PcscConnection(pcscd_ctl.reader_for_port(port))
        cl = CardClient(conn)
        assert cl.jpki_token() == "JPKIAPICCTOKEN2"
        der = cl.read_certificate("auth")
        sig = cl.jpki_sign("auth", di256(b"pcsc"), adult[1].pins["auth"])
        x509.load_der_x509_certificate(der).public_key().verify(sig, b"pcsc", padding.PKCS1v15(),
                                                                hashes.SHA256())
        assert cl.read_basic4(adult[1].pins["kenhojo"])["name"] == adult[1].identity.name
        conn.close()
    finally:
        server.stop()
        daemon.stop()
