"""card/layouts.py: one construct declaration per fixed layout, for building and parsing.

Per layout: build -> parse gives the same values, parse -> build gives the same bytes (over
hypothesis-drawn valid values), known bytes from the spec parse as the spec says, and
malformed input gets one LayoutError naming the field, never a construct exception. The
client parses with the same declarations (CardDataError carrying the layout's message), and
no construct code runs while the card answers APDUs.
"""
from __future__ import annotations

import copy
import datetime as dt

import construct
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings, strategies as st

from mynaemu.card import layouts as L
from mynaemu.card import tlv
from mynaemu.card.apps import common, jpki, kenhojo, kenkaku
from mynaemu.tools.terminal import client as C
from mynaemu.tools.terminal import sm as client_sm

printable = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=1).flatmap(
    lambda first: st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=31)
    .map(lambda rest: (first + rest).rstrip(" ")))


def text(n: int):
    """Printable ASCII of at most n characters with no trailing space (padding is the layout's)."""
    return st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=n).map(
        lambda s: s.rstrip(" "))


def digits(n: int):
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


u32 = st.integers(0, 0xFFFFFFFF)
dates = st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31))
key_ids = st.binary(min_size=16, max_size=16)
moduli = st.integers(2 ** 2047, 2 ** 2048 - 1).map(lambda n: n | 1)

VALUES = {
    "TOKEN_INFO": st.fixed_dictionaries({
        "label": text(32), "manufacturer": text(32), "model": text(16), "serial": text(16),
        "flags": u32, "sessions": st.lists(u32, min_size=4, max_size=4),
        "max_pin_len": u32, "min_pin_len": u32, "memory": st.lists(u32, min_size=4, max_size=4),
        "hw_version": text(2), "fw_version": text(2), "utc_time": digits(16)}),
    "CARD_INFO": st.fixed_dictionaries({"serial": digits(15), "municipality_code": digits(5),
                                        "expiry": dates}),
    "MY_NUMBER": st.fixed_dictionaries({"number": digits(12)}),
    "RSA_PUBLIC_KEY": st.fixed_dictionaries({"modulus": moduli}),
    "CVC_BODY": st.fixed_dictionaries({"issuer_key_id": key_ids, "subject_key_id": key_ids,
                                       "key": st.fixed_dictionaries({"modulus": moduli})}),
    "SESSION_KEY": st.fixed_dictionaries({"key": st.fixed_dictionaries({"modulus": moduli})}),
    "KENHOJO_AP_INFO": st.fixed_dictionaries({
        "id": st.binary(min_size=4, max_size=4), "key_id": key_ids,
        "data": st.binary(min_size=128, max_size=128)}),
    "KENKAKU_AP_INFO": st.fixed_dictionaries({
        "id": st.binary(min_size=4, max_size=4), "key_id": key_ids, "version": st.integers(0, 255),
        "municipality_code": digits(5), "issuer_key_id": key_ids,
        "blob": st.binary(min_size=256, max_size=256)}),
}
SIZES = {"TOKEN_INFO": 160, "CARD_INFO": 30, "MY_NUMBER": 17, "RSA_PUBLIC_KEY": 265,
         "CVC_BODY": 297, "SESSION_KEY": 269, "KENHOJO_AP_INFO": 256, "KENKAKU_AP_INFO": 320}


def plain(obj):
    """A parsed Container as plain dicts/lists, without construct's private keys."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


@pytest.mark.parametrize("name", sorted(VALUES))
def test_sizes_are_the_spec_sizes(name):
    assert getattr(L, name).sizeof() == SIZES[name]


@pytest.mark.parametrize("name", sorted(VALUES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trip(name, data):
    layout = getattr(L, name)
    values = data.draw(VALUES[name])
    raw = L.build(layout, values, name)
    assert len(raw) == SIZES[name]
    parsed = L.parse(layout, raw, name)
    assert plain(parsed) == plain(values)                 # build -> parse: same values
    assert L.build(layout, parsed, name) == raw           # parse -> build: same bytes


@pytest.mark.parametrize("name", sorted(VALUES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_arbitrary_bytes_parse_or_one_layout_error(name, data):
    layout = getattr(L, name)
    raw = data.draw(st.one_of(st.binary(max_size=SIZES[name] + 4),
                              st.binary(min_size=SIZES[name], max_size=SIZES[name])))
    try:
        parsed = L.parse(layout, raw, name)
    except L.LayoutError as exc:
        assert str(exc).startswith(name) and "\n" not in str(exc)
    else:
        assert L.build(layout, parsed, name) == raw


@pytest.mark.parametrize("name", sorted(VALUES))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_single_byte_changes_are_refused_or_reproduced(name, data):
    """Flip one byte of valid bytes: either a precise LayoutError or bytes that rebuild exactly."""
    layout = getattr(L, name)
    raw = bytearray(L.build(layout, data.draw(VALUES[name]), name))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    try:
        parsed = L.parse(layout, bytes(raw), name)
    except L.LayoutError:
        return
    assert L.build(layout, parsed, name) == bytes(raw)


# -- known bytes (spec examples) ------------------------------------------------------------

SPEC_CARD_INFO = b"\x01\x1c" + b"400000012719843" + b"13221" + b"20350217"   # §3.4 example


def test_card_info_spec_example():
    info = L.parse(L.CARD_INFO, SPEC_CARD_INFO, "card info")
    assert (info.serial, info.municipality_code, info.expiry) == (
        "400000012719843", "13221", dt.date(2035, 2, 17))
    assert common.encode_card_info(card_serial="400000012719843", municipality_code="13221",
                                   expiry=dt.date(2035, 2, 17)) == SPEC_CARD_INFO


@pytest.mark.parametrize("raw, message", [
    (SPEC_CARD_INFO[:-1], "card info is 29 bytes, expected 30"),
    (SPEC_CARD_INFO + b"\x00", "card info is 31 bytes, expected 30"),
    (b"\x01\x1d" + SPEC_CARD_INFO[2:], r"card info: parsing expected b'\\x01\\x1c'"),
    (SPEC_CARD_INFO[:5] + b"x" + SPEC_CARD_INFO[6:], "card info serial: must be 15 ASCII digits"),
    (SPEC_CARD_INFO[:17] + b"1322A" + SPEC_CARD_INFO[22:], "card info municipality_code: must be 5"),
    (SPEC_CARD_INFO[:-4] + b"0230", "card info expiry: is not a YYYYMMDD date"),
    ("not bytes", "card info: expected bytes, got str"),
])
def test_card_info_malformed(raw, message):
    with pytest.raises(L.LayoutError, match=message):
        L.parse(L.CARD_INFO, raw, "card info")


def test_token_label_forms():
    label = b"JPKIAPICCTOKEN2" + b" " * 17                 # §3.1: space-padded to 32
    assert L.parse(L.TOKEN_LABEL, label, "label") == "JPKIAPICCTOKEN2"
    assert L.build(L.TOKEN_LABEL, "JPKIAPICCTOKEN2", "label") == label
    assert L.parse(L.TOKEN_LABEL, b"JPKIAPGPSETOKEN" + b" " * 17, "label") == "JPKIAPGPSETOKEN"
    with pytest.raises(L.LayoutError, match="label: not printable ASCII"):
        L.parse(L.TOKEN_LABEL, b"JPKIAPGPSETOKEN" + b"\x00" * 17, "label")   # only 0x20 pads
    with pytest.raises(L.LayoutError, match="label: not printable ASCII"):
        L.parse(L.TOKEN_LABEL, b"JPKI\x07" + b" " * 27, "label")
    with pytest.raises(L.LayoutError, match="label is 20 bytes, expected 32"):
        L.parse(L.TOKEN_LABEL, label[:20], "label")
    with pytest.raises(L.LayoutError, match="at most 32 printable ASCII"):
        L.build(L.TOKEN_LABEL, "x" * 33, "label")
    with pytest.raises(L.LayoutError, match="at most 32 printable ASCII"):
        L.build(L.TOKEN_LABEL, "トークン", "label")


def test_build_errors_name_the_field():
    with pytest.raises(L.LayoutError, match="^CVC body issuer_key_id: .*expected 16, found 15"):
        L.build(L.CVC_BODY, {"issuer_key_id": b"x" * 15, "subject_key_id": b"y" * 16,
                             "key": {"modulus": 2 ** 2047 + 1}}, "CVC body")
    with pytest.raises(L.LayoutError, match="^CVC body key modulus: not an odd 2048-bit"):
        L.build(L.CVC_BODY, {"issuer_key_id": b"x" * 16, "subject_key_id": b"y" * 16,
                             "key": {"modulus": 2 ** 2046 + 1}}, "CVC body")
    with pytest.raises(L.LayoutError, match="^CVC body: missing field subject_key_id"):
        L.build(L.CVC_BODY, {"issuer_key_id": b"x" * 16}, "CVC body")
    with pytest.raises(L.LayoutError, match="^k0003 version: "):
        L.build(L.KENKAKU_AP_INFO, {"id": b"1234", "key_id": b"k" * 16, "version": 256,
                                    "municipality_code": "13221", "issuer_key_id": b"i" * 16,
                                    "blob": b"\0" * 256}, "k0003")
    with pytest.raises(L.LayoutError, match="^card info expiry: must be a datetime.date"):
        L.build(L.CARD_INFO, {"serial": "1" * 15, "municipality_code": "13221", "expiry": "20350217"},
                "card info")


# -- the card modules build and parse with these declarations ---------------------------------

@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(65537, 2048)


def test_token_info_encoder_uses_the_layout():
    ef = jpki.encode_token_info(serial="0000000020500003", time=dt.datetime(2025, 10, 27, 9, 30))
    parsed = L.parse(L.TOKEN_INFO, ef, "EF 0006")
    assert parsed.label == "JPKIAPICCTOKEN2" and list(parsed.sessions) == [1, 0, 1, 0]
    assert C.parse_token_label(ef[:32]) == jpki.parse_token_info(ef)["label"]
    with pytest.raises(ValueError, match="JPKI EF 0006 token info serial: must be at most 16"):
        jpki.encode_token_info(serial="x" * 17, time=dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="JPKI EF 0006 token info label: must be at most 32"):
        jpki.encode_token_info(serial="1", time=dt.datetime(2025, 1, 1), label="\t")
    with pytest.raises(ValueError, match="JPKI EF 0006 token info utc_time: must be 16 ASCII digits"):
        jpki.encode_token_info(serial="1", time=dt.datetime(999, 1, 1))
    with pytest.raises(ValueError, match="token info is 159 bytes, expected 160"):
        jpki.parse_token_info(ef[:-1])


def test_cvc_body_is_the_layout(key):
    cvc = kenhojo.encode_cvc(issuer_key_id=b"I" * 16, subject_key_id=b"S" * 16,
                             subject_public_key=key.public_key(), issuer_key=key)
    body = tlv.expect(cvc, kenhojo.T_CVC).children()[0].value
    fields = L.parse(L.CVC_BODY, body, "CVC body")
    assert fields.key.modulus == key.public_key().public_numbers().n
    parsed = kenhojo.parse_cvc(cvc)
    assert (parsed.issuer_key_id, parsed.subject_key_id, parsed.body) == (b"I" * 16, b"S" * 16, body)
    # a body whose exponent is not 65537 is refused as the malformed TLV it is (§5.1)
    bad = cvc.replace(bytes.fromhex("9003010001"), bytes.fromhex("9003010003"), 1)
    with pytest.raises(tlv.TLVError, match="CVC body key: parsing expected"):
        kenhojo.parse_cvc(bad)
    assert not kenhojo.verify_cvc(bad, key.public_key())


def test_ap_info_and_session_key_and_my_number(key):
    ef5 = kenhojo.encode_ap_info(b"K" * 16)
    assert kenhojo.parse_ap_info(ef5)["key_id"] == b"K" * 16
    with pytest.raises(ValueError, match="kenhojo EF 0005: parsing expected"):
        kenhojo.parse_ap_info(ef5[:-1] + b"\x00")          # filler must be FF (§13.3)
    ef3 = kenkaku.encode_ap_info(key_id=b"K" * 16, municipality_code="13221", issuer_key_id=b"I" * 16)
    assert kenkaku.parse_ap_info(ef3)["blob_key_id"] == b"I" * 16
    with pytest.raises(ValueError, match="kenkaku EF 0003 municipality_code: must be 5 ASCII digits"):
        kenkaku.parse_ap_info(ef3.replace(b"13221", b"1322X"))
    ef6 = kenhojo.encode_session_key(key.public_key())
    assert client_sm.session_public_key(ef6).public_numbers() == key.public_key().public_numbers()
    assert kenhojo.parse_session_key(ef6).public_numbers() == key.public_key().public_numbers()
    with pytest.raises(C.CardDataError, match="kenhojo EF 0006 is 268 bytes, expected 269"):
        client_sm.session_public_key(ef6[:-1])
    ef1 = kenhojo.encode_my_number("123456789018")
    assert ef1 == b"\xff\x10\x0c123456789018\xff\xff"
    assert kenhojo.parse_my_number(ef1) == C.parse_my_number(ef1) == "123456789018"


@pytest.mark.parametrize("raw", [
    b"\xff\x10\x0c12345678901X\xff\xff", b"\xff\x10\x0c123456789018\xff", b"\xff\x10\x0d123456789018\xff\xff"])
def test_card_and_client_refuse_the_same_my_number(raw):
    with pytest.raises(L.LayoutError) as on_card:
        kenhojo.parse_my_number(raw)
    with pytest.raises(C.CardDataError) as on_client:
        C.parse_my_number(raw)
    assert str(on_card.value) == str(on_client.value)


def test_client_card_info_is_the_layout():
    assert C.parse_card_info(SPEC_CARD_INFO)["expiry"] == dt.date(2035, 2, 17)
    assert common.parse_card_info(SPEC_CARD_INFO)["expiry"] == "20350217"
    with pytest.raises(C.CardDataError, match="card-info record expiry: is not a YYYYMMDD date"):
        C.parse_card_info(SPEC_CARD_INFO[:-4] + b"1317")


# -- no construct on the per-APDU path --------------------------------------------------------

def test_card_serves_apdus_without_construct(monkeypatch):
    """Layouts are built at personalisation; the card then serves stored bytes (§3)."""
    from mynaemu.card.core import Card
    from mynaemu.issuance.personas import build_persona
    image = build_persona("adult", seed=0)[0]
    card = Card(copy.deepcopy(image))

    def forbidden(self, *args, **kwargs):
        raise AssertionError(f"construct {type(self).__name__} used while serving APDUs")

    monkeypatch.setattr(construct.Construct, "build", forbidden)
    monkeypatch.setattr(construct.Construct, "parse", forbidden)
    card.power_on()
    answers = [card.transmit(bytes.fromhex(apdu)) for apdu in (
        "00A4040C0AD392F000260100000001", "00A4020C020006", "00B0000000",       # JPKI token info
        "00A4040C0AD3921000310001010100", "00B2010C00",                         # card info record
        "00A4040C0AD3921000310001010408", "00A4020C020005", "00B0000000",       # kenhojo EF 0005
        "00A4020C020004", "00B0000000",                                         # CVC
        "00A4040C0AD3921000310001010402", "00A4020C020003", "00B0000000")]      # kenkaku EF 0003
    assert all(a[-2:] == b"\x90\x00" for a in answers), [a[-2:].hex() for a in answers]
    assert answers[2][:15] == b"JPKIAPICCTOKEN2" and len(answers[2]) == 162
    assert answers[4][:2] == b"\x01\x1c"


def test_tlv_rsa_key_form_is_the_layout(key):
    """card/tlv.py's RSA key helpers serve layouts.RSA_PUBLIC_KEY (§5.1: RSA-2048, e = 65537)."""
    raw = tlv.encode_rsa_public_key(key)
    assert raw == L.build(L.RSA_PUBLIC_KEY, {"modulus": key.public_key().public_numbers().n}, "k")
    with pytest.raises(tlv.TLVError, match="RSA public key key|RSA public key: parsing expected"):
        tlv.decode_rsa_public_key(bytes.fromhex("9003010003") + raw[5:])
    with pytest.raises(tlv.TLVError, match="exponent must be 65537"):
        tlv.encode_rsa_public_key(rsa.generate_private_key(3, 2048))
    with pytest.raises(tlv.TLVError, match="not an odd 2048-bit RSA modulus"):
        tlv.encode_rsa_public_key(rsa.generate_private_key(65537, 1024))
