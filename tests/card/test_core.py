"""The command interpreter against a small hand-built image (spec §2, §4, §5, §6, §9)."""
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from mynaemu.card.core import Card, CardNotPowered, ISD_AID
from mynaemu.card.image import (Application, BinaryEF, CardImage, CardOptions, FREE, KeyEF,
                                NEVER, PinEF, RecordEF)

AID_J = bytes.fromhex("D392F000260100000001")
AID_H = bytes.fromhex("D3921000310001010408")
SHA256_DI = bytes.fromhex("3031300d060960864801650304020105000420")


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(65537, 2048)


def pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_image(key, **options):
    jpki = Application("jpki", AID_J, {})
    jpki.add(BinaryEF(0x000A, bytes(range(256)) * 3 + b"\x01\x02"))  # 770 bytes, free
    jpki.add(BinaryEF(0x0001, b"signcert" * 10, read=(0x001B,)))
    jpki.add(BinaryEF(0x0009, b"\x00" * 8, read=NEVER))
    jpki.add(PinEF(0x0018, b"1234", 3, 3, "[0-9]{4}"))
    jpki.add(PinEF(0x001B, b"ABC123", 5, 5, "[A-Z0-9]{6,16}"))
    jpki.add(KeyEF(0x0017, pem(key), use=(0x0018,)))
    jpki.add(KeyEF(0x001A, pem(key), use=(0x001B,)))
    hojo = Application("kenhojo", AID_H, {})
    hojo.add(BinaryEF(0x0001, b"\xff\x10\x0c123456789018\xff\xff", read=(0x0011,)))
    hojo.add(PinEF(0x0011, b"1234", 3, 3, "[0-9]{4}"))
    hojo.add(KeyEF(0x0013, pem(key), use=FREE, default=True))
    hojo.add(RecordEF(0x0005, [b"\x01\x03abc", b"\x02\x01z"]))
    return CardImage([jpki, hojo], label="t", options=CardOptions(**options),
                     get_data={0x00F0: b"13221", 0x00F8: b"\xAA" * 300})


def tx(card, hexstr):
    r = card.transmit(bytes.fromhex(hexstr.replace(" ", "")))
    return r[:-2], r[-2:].hex().upper()


def sel_j(card):
    assert tx(card, "00A4040C0A" + AID_J.hex())[1] == "9000"


@pytest.fixture
def card(key):
    c = Card(make_image(key))
    c.power_on()
    return c


def test_not_powered_raises(key):
    with pytest.raises(CardNotPowered):
        Card(make_image(key)).transmit(b"\x00\xa4\x04\x0c")


def test_atr_profiles(key):
    c = Card(make_image(key))
    assert c.power_on().hex().upper() == "3BE000FF8131FE4514"
    img = make_image(key)
    img.atr = "contactless"
    assert Card(img).power_on().hex().upper() == "3B888001000041E0B381A1003B"


def test_select_df_and_foreign_aids(card):
    sel_j(card)
    assert tx(card, "00A4040C07A0000003080000")[1] == "6A82"          # not a prefix of any
    assert tx(card, "00A4040C09A00000030800001000")[1] == "6A82"      # PIV
    assert tx(card, "00A4040C06D27600012401")[1] == "6A82"            # OpenPGP
    assert tx(card, "00A4040C07" + ISD_AID.hex())[1] == "9000"


def test_select_fci_option(key):
    c = Card(make_image(key)); c.power_on()
    data, sw = tx(c, "00A404000A" + AID_J.hex() + "00")
    assert sw == "9000" and data == b"\x6f\x0c\x84\x0a" + AID_J
    c = Card(make_image(key, select_fci=False)); c.power_on()
    assert tx(c, "00A404000A" + AID_J.hex() + "00") == (b"", "9000")


def test_select_mf_quirks(card):
    assert tx(card, "00A40000")[1] == "6A86"     # straight after a cold reset
    sel_j(card)
    assert tx(card, "00A40000")[1] == "9000"
    assert tx(card, "00A4000002 3F00")[1] == "6A82"
    # the current DF did not change: EF 000A still reachable
    assert tx(card, "00A4020C02000A")[1] == "9000"


def test_prefix_select(key):
    c = Card(make_image(key)); c.power_on()
    assert tx(c, "00A4040C08D392100031000101")[1] == "9000"
    assert c.current_app.name == "kenhojo"
    c = Card(make_image(key, prefix_select=False)); c.power_on()
    assert tx(c, "00A4040C08D392100031000101")[1] == "6A82"


def test_read_binary_forms(card):
    sel_j(card)
    assert tx(card, "00A4020C02000A")[1] == "9000"
    d, sw = tx(card, "00B0000004"); assert sw == "9000" and d == bytes(range(4))
    d, sw = tx(card, "00B0000000"); assert sw == "9000" and len(d) == 256
    d, sw = tx(card, "00B0030000"); assert sw == "9000" and d == b"\x01\x02"  # Le past the end
    assert tx(card, "00B0030200")[1] == "6B00"                                   # offset == len
    d, sw = tx(card, "00B00000000000"); assert sw == "9000" and len(d) == 770  # ext Le 65536
    d, sw = tx(card, "00B00004000300"); assert sw == "9000" and len(d) == 766    # ext Le 0x0300
    d, sw = tx(card, "00B08A0004"); assert sw == "9000" and d == bytes(range(4))  # SFI
    assert tx(card, "00B08F0004")[1] == "6A82"
    assert tx(card, "00B000000400")[1] == "6700"                                  # Lc=04 without data


def test_read_binary_errors(card):
    sel_j(card)
    assert tx(card, "00B0000004")[1] == "6986"            # no current EF
    assert tx(card, "00A4020C020018")[1] == "9000"
    assert tx(card, "00B0000004")[1] == "6981"            # PIN EF
    assert tx(card, "00A4020C020009")[1] == "9000"
    assert tx(card, "00B0000004")[1] == "6982"            # protected forever
    assert tx(card, "00B0000001")[1] == "6982"
    assert tx(card, "00B00000")[1] == "6700"              # no Le


def test_sign_cert_needs_sign_pin(card):
    sel_j(card)
    assert tx(card, "00B0810004")[1] == "6982"
    assert tx(card, "00A4020C02001B")[1] == "9000"
    assert tx(card, "0020008006" + b"ABC123".hex())[1] == "9000"
    d, sw = tx(card, "00B0810000"); assert sw == "9000" and d.startswith(b"signcert")


def test_verify_retry_semantics(card):
    sel_j(card)
    tx(card, "00A4020C020018")
    assert tx(card, "00200080")[1] == "63C3"
    assert tx(card, "0020008004" + b"1234".hex())[1] == "9000"
    assert tx(card, "00200080")[1] == "63C3"               # still 63Cn after success (OSC-959)
    assert tx(card, "0020008004" + b"0000".hex())[1] == "63C2"
    assert tx(card, "0020008004" + b"0000".hex())[1] == "63C1"
    assert tx(card, "0020008004" + b"1234".hex())[1] == "9000"   # correct PIN resets
    assert tx(card, "00200080")[1] == "63C3"
    for expect in ("63C2", "63C1", "63C0"):
        assert tx(card, "0020008004" + b"9999".hex())[1] == expect
    assert tx(card, "00200080")[1] == "63C0"
    assert tx(card, "0020008004" + b"1234".hex())[1] == "6984"   # blocked, even the right PIN
    assert tx(card, "0020009804" + b"1234".hex())[1] == "6984"   # SFI form


def test_failed_verify_clears_status(card):
    sel_j(card)
    assert tx(card, "0020009B06" + b"ABC123".hex())[1] == "9000"
    assert tx(card, "00B0810004")[1] == "9000"
    assert tx(card, "0020009B06" + b"ABC124".hex())[1] == "63C4"
    assert tx(card, "00B0810004")[1] == "6982"


def test_verify_errors(card):
    sel_j(card)
    assert tx(card, "00200080")[1] == "6986"              # no current EF
    tx(card, "00A4020C02000A")
    assert tx(card, "00200080")[1] == "6981"              # not a PIN
    assert tx(card, "0020009C")[1] == "6A88"              # no PIN with that SFI
    assert tx(card, "0020009F")[1] == "6A86"              # SFI 1F is not an SFI
    assert tx(card, "00200180")[1] == "6A86"


def test_security_status_scope(key):
    c = Card(make_image(key)); c.power_on()
    sel_j(c)
    assert tx(c, "0020009B06" + b"ABC123".hex())[1] == "9000"
    sel_j(c)                                             # same DF: kept by default (§4.5)
    assert tx(c, "00B0810004")[1] == "9000"
    c.reset(warm=True)                                   # warm reset keeps
    sel_j(c)
    assert tx(c, "00B0810004")[1] == "9000"
    assert tx(c, "00A4040C07" + ISD_AID.hex())[1] == "9000"   # another DF clears
    sel_j(c)
    assert tx(c, "00B0810004")[1] == "6982"
    assert tx(c, "0020009B06" + b"ABC123".hex())[1] == "9000"
    c.power_off(); c.power_on(); sel_j(c)                # power loss clears
    assert tx(c, "00B0810004")[1] == "6982"
    c = Card(make_image(key, reselect_keeps_status=False)); c.power_on(); sel_j(c)
    assert tx(c, "0020009B06" + b"ABC123".hex())[1] == "9000"
    sel_j(c)
    assert tx(c, "00B0810004")[1] == "6982"


def test_sign_pkcs1_digestinfo_deterministic(card, key):
    sel_j(card)
    digest = hashlib.sha256(b"hello").digest()
    tx(card, "00A4020C020017")
    assert tx(card, "802A00803300")[1] == "6700"        # Lc=33 with one data byte: malformed
    assert tx(card, "802A0080" + "33" + (SHA256_DI + digest).hex() + "00")[1] == "6982"
    tx(card, "00A4020C020018"); tx(card, "0020008004" + b"1234".hex()); tx(card, "00A4020C020017")
    s1, sw = tx(card, "802A008033" + (SHA256_DI + digest).hex() + "00")
    assert sw == "9000" and len(s1) == 256
    s2, _ = tx(card, "802A009733" + (SHA256_DI + digest).hex() + "00")     # SFI form, identical
    assert s1 == s2
    key.public_key().verify(s1, b"hello", padding.PKCS1v15(), hashes.SHA256())
    # arbitrary (non-DigestInfo) input is padded as given: check by raw RSA
    raw, sw = tx(card, "802A008005" + "0102030405" + "00")
    pub = key.public_key().public_numbers()
    em = pow(int.from_bytes(raw, "big"), pub.e, pub.n).to_bytes(256, "big")
    assert em == b"\x00\x01" + b"\xff" * (256 - 3 - 5) + b"\x00\x01\x02\x03\x04\x05"


def test_sign_schemes(card, key):
    sel_j(card)
    tx(card, "0020009804" + b"1234".hex())
    pub = key.public_key()
    h = hashlib.sha256(b"msg").digest()
    s, sw = tx(card, "802A02972000".replace("2000", "20") + h.hex() + "00")
    assert sw == "9000"; pub.verify(s, h, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    s, sw = tx(card, "802A039703" + b"msg".hex() + "00")
    pub.verify(s, b"msg", padding.PKCS1v15(), hashes.SHA256())
    s, sw = tx(card, "802A059703" + b"msg".hex() + "00")
    pub.verify(s, b"msg", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    s, sw = tx(card, "802A04972000".replace("2000", "20") + h.hex() + "00")
    pub.verify(s, h, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256()))
    s, sw = tx(card, "802A019703" + b"msg".hex() + "00")
    em = pow(int.from_bytes(s, "big"), pub.public_numbers().e, pub.public_numbers().n).to_bytes(256, "big")
    assert em.endswith(b"\x00" + h) and em.startswith(b"\x00\x01\xff")
    assert tx(card, "802A069703" + b"msg".hex() + "00")[1] == "6A86"
    assert tx(card, "802A029703" + b"msg".hex() + "00")[1] == "6700"
    assert tx(card, "802A0097F6" + "00" * 246 + "00")[1] == "6700"      # > k-11


def test_default_key_signs_without_pin(card, key):
    assert tx(card, "00A4040C0A" + AID_H.hex())[1] == "9000"
    chal, sw = tx(card, "0084000010")
    assert sw == "9000" and len(chal) == 16
    di = SHA256_DI + hashlib.sha256(chal).digest()
    s, sw = tx(card, "802A000033" + di.hex() + "00")
    assert sw == "9000"
    key.public_key().verify(s, chal, padding.PKCS1v15(), hashes.SHA256())
    assert tx(card, "00880093 10" + "00" * 16 + "00")[1] == "6985"   # 券面 key: not INTERNAL AUTH


def test_get_challenge(card):
    assert len(tx(card, "0084000000")[0]) == 256
    assert tx(card, "00840000000010")[1] == "6985"       # extended Le refused
    assert tx(card, "00840100 08")[1] == "6A86"


def test_records(card):
    assert tx(card, "00A4040C0A" + AID_H.hex())[1] == "9000"
    assert tx(card, "00B2012C00") == (b"\x01\x03abc", "9000")
    assert tx(card, "00B2022C00") == (b"\x02\x01z", "9000")
    assert tx(card, "00B2032C00")[1] == "6A83"
    assert tx(card, "00B2002C00")[1] == "6A86"
    assert tx(card, "00B0850000")[1] == "6981"            # READ BINARY on a record EF


def test_get_data_mf_level(card):
    assert tx(card, "00CA00F000") == (b"13221", "9000")
    assert tx(card, "00CA00F800")[1] == "6700"            # large object needs extended Le
    d, sw = tx(card, "00CA00F8000000"); assert sw == "9000" and len(d) == 300
    assert tx(card, "00CA00F100")[1] == "6A88"
    sel_j(card)
    assert tx(card, "00CA00F000")[1] == "6A88"


def test_class_byte_rules(card):
    assert tx(card, "01A4040C0A" + AID_J.hex())[1] == "6881"
    assert tx(card, "0CA4040C0A" + AID_J.hex())[1] == "6882"
    assert tx(card, "0CB0000004")[1] == "69FC"
    assert tx(card, "08200080")[1] == "69FC"
    assert tx(card, "A0A4040C0A" + AID_J.hex())[1] == "6E00"
    assert tx(card, "00FE0000")[1] == "6D00"
    assert tx(card, "80A40000")[1] == "6D00"
    assert tx(card, "80FC0000")[1] == "6700"


def test_malformed_never_raises(card):
    for h in ["", "00", "00A4", "00A404", "00B0000000000000FF", "00A4040C05AABB", "000000000100"]:
        r = card.transmit(bytes.fromhex(h))
        assert len(r) == 2 and r.hex().upper() in ("6700", "6D00", "6A86")


def test_change_reference_data(card):
    sel_j(card)
    tx(card, "00A4020C020018")
    assert tx(card, "0024018004" + b"4321".hex())[1] == "6982"   # not verified
    tx(card, "0020008004" + b"1234".hex())
    assert tx(card, "0024018003" + b"432".hex())[1] == "6A80"    # bad format, unchanged
    assert tx(card, "0024008004" + b"4321".hex())[1] == "6A86"
    assert tx(card, "0024018004" + b"4321".hex())[1] == "9000"
    assert tx(card, "0020008004" + b"1234".hex())[1] == "63C2"
    assert tx(card, "0020008004" + b"4321".hex())[1] == "9000"


def test_persist_before_compare(key):
    events = []

    def persist(img):
        events.append(img.pin("jpki", 0x18).remaining)

    c = Card(make_image(key), persist=persist); c.power_on(); sel_j(c)
    tx(c, "0020009804" + b"0000".hex())
    assert events == [2]                        # written before the answer, once
    events.clear()
    tx(c, "0020009804" + b"1234".hex())
    assert events == [1, 3]                     # decrement durable first, then the reset


def test_persist_failure_reports_memory_error(key):
    def persist(img):
        raise OSError(28, "No space left on device")

    c = Card(make_image(key), persist=persist); c.power_on(); sel_j(c)
    assert tx(c, "0020009804" + b"1234".hex())[1] == "6581"
    assert c.verified == set()


def test_answer_longer_than_le_is_wrong_length(card, key):
    sel_j(card)
    tx(card, "0020009804" + b"1234".hex())
    di = SHA256_DI + hashlib.sha256(b"x").digest()
    assert tx(card, "802A009733" + di.hex() + "01")[1] == "6700"           # Le=1 < 256
    assert tx(card, "802A009733" + di.hex() + "00")[1] == "9000"           # Le=256
    assert tx(card, "802A0097000033" + di.hex() + "0000")[1] == "9000"   # extended Le 65536
    # SELECT with an FCI longer than Le: refused, and nothing was selected
    assert tx(card, "00A404000A" + AID_H.hex() + "04")[1] == "6700"
    assert card.current_app.name == "jpki"


def test_select_ef_with_short_le_selects_nothing(card):
    sel_j(card)
    assert tx(card, "00A4020C02000A")[1] == "9000"
    assert tx(card, "00A40200020001" + "01")[1] == "6700"         # FCP longer than Le=1
    assert card.current_ef == 0x000A
    data, sw = tx(card, "00A40200020001" + "00")
    assert sw == "9000" and data[0] == 0x62 and card.current_ef == 0x0001
