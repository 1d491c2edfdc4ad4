"""BER-TLV / simple-TLV helpers (mynaemu.card.tlv): encodings the card's EFs depend on."""
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, strategies as st

from mynaemu.card import tlv


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(65537, 2048)


@pytest.mark.parametrize("tag, raw", [
    (0x90, b"\x90"), (0xA1, b"\xa1"), (0xFF20, b"\xff\x20"), (0xDF21, b"\xdf\x21"),
    (0x7F21, b"\x7f\x21"), (0x5F4E, b"\x5f\x4e"), (0x5F37, b"\x5f\x37"), (0xFF10, b"\xff\x10"),
])
def test_tag_bytes(tag, raw):
    assert tlv.tag_bytes(tag) == raw


@pytest.mark.parametrize("tag", [0x1F, 0xDF, 0x2021, 0xFF80, -1])
def test_bad_tags_refused(tag):
    with pytest.raises(tlv.TLVError):
        tlv.tag_bytes(tag)


@pytest.mark.parametrize("n, raw", [
    (0, b"\x00"), (0x7F, b"\x7f"), (0x80, b"\x81\x80"), (0xFF, b"\x81\xff"),
    (0x100, b"\x82\x01\x00"), (0xFFFF, b"\x82\xff\xff"), (0x10000, b"\x83\x01\x00\x00"),
])
def test_shortest_length(n, raw):
    assert tlv.encode_length(n) == raw


def test_forced_length_widths():
    # kenhojo EF 0005 header FF 40 82 00 9F (spec §3.2): 159 in the two-byte form.
    assert tlv.encode_length(0x9F, 2) == b"\x82\x00\x9f"
    assert tlv.encode_length(0x20, 1) == b"\x81\x20"
    assert tlv.encode_length(0x20, 0) == b"\x20"
    with pytest.raises(tlv.TLVError):
        tlv.encode_length(0x80, 0)
    with pytest.raises(tlv.TLVError):
        tlv.encode_length(0x100, 1)
    with pytest.raises(tlv.TLVError):
        tlv.encode_length(5, 5)


def test_encode_and_decode_two_byte_tags():
    inner = tlv.encode(0xDF22, "黒桐".encode()) + tlv.encode(0xDF25, b"1")
    outer = tlv.encode(0xFF20, inner)
    assert outer[:3] == bytes([0xFF, 0x20, len(inner)])
    item = tlv.decode_one(outer)
    assert item.tag == 0xFF20 and item.constructed and item.header_len == 3
    kids = item.children()
    assert [k.tag for k in kids] == [0xDF22, 0xDF25]
    assert kids[0].value.decode() == "黒桐" and kids[1].value == b"1"
    assert not kids[0].constructed


def test_long_value_round_trip():
    value = bytes(range(256)) * 3
    raw = tlv.encode(0xDF27, value)
    assert raw[:5] == b"\xdf\x27\x82\x03\x00"
    item = tlv.decode_one(raw)
    assert item.value == value and item.end == len(raw)


def test_decode_errors_are_precise():
    with pytest.raises(tlv.TLVError, match="claims 5 value bytes"):
        tlv.decode_one(b"\xdf\x21\x05\x00\x00")
    with pytest.raises(tlv.TLVError, match="indefinite"):
        tlv.decode_one(b"\x30\x80\x00\x00")
    with pytest.raises(tlv.TLVError, match="tag runs past"):
        tlv.decode_one(b"\xff")
    with pytest.raises(tlv.TLVError, match="length field runs past"):
        tlv.decode_one(b"\x90\x82\x01")


def test_decode_all_stops_at_filler():
    data = tlv.encode(0xFF10, b"123456789012") + b"\xff\xff"
    items = tlv.decode_all(data)
    assert len(items) == 1 and items[0].value == b"123456789012"
    with pytest.raises(tlv.TLVError):
        tlv.decode_all(data, stop_at_filler=False)


def test_find_and_expect():
    data = tlv.encode(0x90, b"\x01\x00\x01") + tlv.encode(0x91, b"\x02" * 4)
    assert tlv.find(data, 0x91).value == b"\x02" * 4
    with pytest.raises(tlv.TLVError, match="not found"):
        tlv.find(data, 0x92)
    with pytest.raises(tlv.TLVError, match="expected tag FF20"):
        tlv.expect(data, 0xFF20)


def test_simple_tlv():
    rec = tlv.encode_simple(0x01, b"4" * 28)
    assert rec[:2] == b"\x01\x1c" and len(rec) == 30
    item = tlv.decode_simple(rec)
    assert item.tag == 1 and item.value == b"4" * 28
    big = tlv.encode_simple(0x02, b"x" * 300)
    assert big[:4] == b"\x02\xff\x01\x2c"
    assert tlv.decode_simple(big).value == b"x" * 300
    assert [i.tag for i in tlv.decode_simple_all(rec + big + b"\xff\xff")] == [1, 2]
    for bad in (0x00, 0xFF):
        with pytest.raises(tlv.TLVError):
            tlv.encode_simple(bad, b"")
    with pytest.raises(tlv.TLVError, match="claims"):
        tlv.decode_simple(b"\x01\x05ab")


def test_rsa_public_key_round_trip(key):
    raw = tlv.encode_rsa_public_key(key.public_key())
    assert len(raw) == 265
    assert raw[:9] == bytes.fromhex("9003010001918201") + b"\x00"
    back = tlv.decode_rsa_public_key(raw)
    assert back.public_numbers() == key.public_key().public_numbers()
    with pytest.raises(tlv.TLVError):
        tlv.decode_rsa_public_key(raw[5:])  # modulus without exponent
    with pytest.raises(TypeError):
        tlv.encode_rsa_public_key(b"not a key")


@given(tag=st.sampled_from([0x90, 0x91, 0xA1, 0xDF21, 0xFF20, 0x7F21, 0x5F4E]),
       value=st.binary(max_size=70000))
def test_round_trip_property(tag, value):
    raw = tlv.encode(tag, value)
    item = tlv.decode_one(raw)
    assert (item.tag, item.value, item.end) == (tag, value, len(raw))
