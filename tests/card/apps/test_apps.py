"""Card application layouts (mynaemu.card.apps.*): formats, signatures, sizes and access rules.

The expected values are written out from the spec (card-interface.md §3, §4.1, §4.3) rather
than taken from the modules' own constants, so a wrong constant fails here.
"""
import datetime as dt
import hashlib
import io
import json

import pytest
from asn1crypto import algos
from PIL import Image
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from mynaemu.card import tlv
from mynaemu.card.apps import common, jpki, juki, kenhojo, kenkaku, mf
from mynaemu.card.image import FREE, NEVER, CardImage, KeyEF, PinEF

BIRTH = dt.date(1980, 2, 17)
EXPIRY = dt.date(2035, 2, 17)
NUMBER = "123456789018"
COLLATION_B = "55021720352285"   # 昭和55 0217 + 2035 + 2285 (spec §4.3 example shape)
NAME = "黒桐　幹也"               # 15 bytes of UTF-8 (spec §3.2 worked example)
ADDRESS = "東京都清瀬市中里一丁目二番地三号４５"  # 18 chars x 3 bytes = 54 bytes


@pytest.fixture(scope="module")
def keys():
    names = ["cvc_issuer", "signer", "ap", "session", "card", "auth", "sign", "ca", "juki", "other"]
    return {n: rsa.generate_private_key(65537, 2048) for n in names}


def _cert(subject_key, issuer_key, cn, ca=False):
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "TEST CA")])
    builder = (x509.CertificateBuilder().subject_name(issuer if ca else name).issuer_name(issuer)
               .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(dt.datetime(2025, 1, 1)).not_valid_after(dt.datetime(2030, 1, 1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def certs(keys):
    ca = _cert(keys["ca"], keys["ca"], "TEST CA", ca=True)
    return {"ca": ca, "auth": _cert(keys["auth"], keys["ca"], "TESTAUTH0001"),
            "sign": _cert(keys["sign"], keys["ca"], "TESTSIGN0001")}


@pytest.fixture(scope="module")
def cvc(keys):
    return kenhojo.encode_cvc(issuer_key_id=b"TEST-CVC-ISSUER1", subject_key_id=b"TEST-CVC-SUBJ-01",
                              subject_public_key=keys["signer"].public_key(),
                              issuer_key=keys["cvc_issuer"])


@pytest.fixture(scope="module")
def hojo(keys, cvc):
    return kenhojo.build(individual_number=NUMBER, name=NAME, address=ADDRESS, birth=BIRTH,
                         sex="1", pin="1234", collation_b=COLLATION_B, cvc=cvc,
                         signer_key=keys["signer"], ap_key=keys["ap"],
                         session_public_key=keys["session"].public_key())


@pytest.fixture(scope="module")
def kaku(keys, cvc):
    return kenkaku.build(individual_number=NUMBER, name=NAME, address=ADDRESS, birth=BIRTH, sex="1",
                         expiry=EXPIRY, security_code="2285", collation_b=COLLATION_B,
                         municipality_code="13221", cvc=cvc, signer_key=keys["signer"],
                         card_key=keys["card"], face_seed=3)


@pytest.fixture(scope="module")
def jp(keys, certs):
    return jpki.build(auth_cert_der=certs["auth"], auth_ca_der=certs["ca"], sign_ca_der=certs["ca"],
                      auth_key=keys["auth"], auth_pin="1234", sign_cert_der=certs["sign"],
                      sign_key=keys["sign"], sign_pin="TESTPASS1", token_serial="0000000020500003",
                      token_time=dt.datetime(2025, 10, 27, 9, 30, 0), inert_key=keys["other"])


@pytest.fixture(scope="module")
def jp_child(keys, certs):
    return jpki.build(auth_cert_der=certs["auth"], auth_ca_der=certs["ca"], sign_ca_der=certs["ca"],
                      auth_key=keys["auth"], auth_pin="5678", token_serial="0000000020500004",
                      token_time=dt.datetime(2025, 10, 27, 9, 30, 0), inert_key=keys["other"])


def data(app, fid):
    return app.efs[fid].data


def flips(buf, positions):
    """Copies of buf with one byte inverted at each position."""
    for p in positions:
        b = bytearray(buf)
        b[p] ^= 0xFF
        yield p, bytes(b)


def opens(app, pin_fid, ef_fid):
    rule = app.efs[ef_fid].read
    return rule == FREE or (isinstance(rule, tuple) and pin_fid in rule)


def pem_public(key_ef):
    key = serialization.load_pem_private_key(key_ef.key_pem, None)
    return key.public_key().public_numbers()


# -- CVC ----------------------------------------------------------------------------------------

def test_cvc_layout_and_signature(keys, cvc):
    assert len(cvc) == 568
    assert cvc[:5] == bytes.fromhex("7F21820233")
    assert cvc[5:10] == bytes.fromhex("5F4E820129")
    body = cvc[10:10 + 297]
    assert body[:16] == b"TEST-CVC-ISSUER1" and body[16:32] == b"TEST-CVC-SUBJ-01"
    assert body[32:37] == bytes.fromhex("9003010001") and body[37:41] == bytes.fromhex("91820100")
    assert cvc[307:312] == bytes.fromhex("5F37820100")
    keys["cvc_issuer"].public_key().verify(cvc[312:], body, padding.PKCS1v15(), hashes.SHA256())
    assert kenhojo.verify_cvc(cvc, keys["cvc_issuer"].public_key())
    assert not kenhojo.verify_cvc(cvc, keys["other"].public_key())
    parsed = kenhojo.parse_cvc(cvc)
    assert parsed.public_key.public_numbers() == keys["signer"].public_key().public_numbers()


def test_cvc_flipped_byte_fails(keys, cvc):
    for pos, bad in flips(cvc, [12, 40, 200, 306, 320, 567]):
        assert not kenhojo.verify_cvc(bad, keys["cvc_issuer"].public_key()), pos
    assert not kenhojo.verify_cvc(cvc[:300], keys["cvc_issuer"].public_key())


def test_cvc_refuses_bad_key_ids(keys):
    with pytest.raises(ValueError, match="16 bytes"):
        kenhojo.encode_cvc(issuer_key_id=b"short", subject_key_id=b"x" * 16,
                           subject_public_key=keys["signer"].public_key(), issuer_key=keys["cvc_issuer"])


# -- kenhojo ------------------------------------------------------------------------------------

def test_kenhojo_aid_and_my_number(hojo):
    assert hojo.aid == bytes.fromhex("D3921000310001010408")
    ef = data(hojo, 0x0001)
    assert ef == b"\xff\x10\x0c" + NUMBER.encode() + b"\xff\xff" and len(ef) == 17
    assert kenhojo.parse_my_number(ef) == NUMBER


def test_kenhojo_basic4_matches_the_worked_example(hojo):
    ef = data(hojo, 0x0002)
    # spec §3.2: name 15 bytes + address 54 bytes -> FF 20 65, offsets 000E 0020 0059 0064, 104 bytes
    assert len(NAME.encode()) == 15 and len(ADDRESS.encode()) == 54
    assert ef[:3] == bytes.fromhex("FF2065") and len(ef) == 104
    assert ef[3:14] == bytes.fromhex("DF2108000E002000590064")
    assert ef[0x0E:0x10] == b"\xdf\x22" and ef[0x20:0x22] == b"\xdf\x23"
    assert ef[0x59:0x5C] == b"\xdf\x24\x08" and ef[0x64:0x68] == b"\xdf\x25\x01\x31"
    assert ef[2] + 3 == len(ef)  # clients read byte 2 as the length
    parsed = kenhojo.parse_basic4(ef)
    assert parsed == {"name": NAME, "address": ADDRESS, "birth": "19800217", "sex": "1",
                      "offsets": [0x0E, 0x20, 0x59, 0x64]}


def test_kenhojo_basic4_long_content_needs_long_form():
    long_address = "東京都清瀬市中里" * 5
    with pytest.raises(ValueError, match="long"):
        kenhojo.encode_basic4(name=NAME, address=long_address, birth=BIRTH, sex="2")
    ef = kenhojo.encode_basic4(name=NAME, address=long_address, birth=BIRTH, sex="2", long_form=True)
    assert ef[:3] == b"\xff\x20\x81" and ef[3] + 4 == len(ef)
    parsed = kenhojo.parse_basic4(ef)
    assert parsed["address"] == long_address and parsed["offsets"][0] == 15
    assert kenhojo.basic4_signed_range(ef)[:2] == b"\xdf\x22"


def test_kenhojo_basic4_refuses_bad_fields():
    with pytest.raises(ValueError, match="sex"):
        kenhojo.encode_basic4(name=NAME, address=ADDRESS, birth=BIRTH, sex="3")
    with pytest.raises(ValueError):
        kenhojo.encode_basic4(name="", address=ADDRESS, birth=BIRTH, sex="1")


def test_kenhojo_basic4_parse_rejects_wrong_offsets(hojo):
    bad = bytearray(data(hojo, 0x0002))
    bad[6] += 1  # first offset no longer points at DF22
    with pytest.raises(ValueError, match="offset"):
        kenhojo.parse_basic4(bytes(bad))


def test_kenhojo_integrity_record(keys, hojo):
    ef1, ef2, ef3, ef4 = (data(hojo, f) for f in (1, 2, 3, 4))
    assert len(ef3) == 336 and ef3[:5] == bytes.fromhex("FF3082014B")
    assert ef3[5:8] == b"\xdf\x31\x20"
    assert ef3[8:40] == hashlib.sha256(ef1).digest()
    assert ef3[40:43] == b"\xdf\x32\x20"
    assert ef3[43:75] == hashlib.sha256(ef2[0x0E:]).digest()
    assert ef3[75:80] == bytes.fromhex("DF33820100")
    keys["signer"].public_key().verify(ef3[80:], ef3[5:75], padding.PKCS1v15(), hashes.SHA256())
    assert kenhojo.verify_integrity(ef1, ef2, ef3, ef4)


def test_kenhojo_integrity_flipped_byte_fails(keys, hojo):
    ef1, ef2, ef3, ef4 = (data(hojo, f) for f in (1, 2, 3, 4))
    for p, bad in flips(ef1, range(17)):
        assert not kenhojo.verify_integrity(bad, ef2, ef3, ef4), ("0001", p)
    for p, bad in flips(ef2, [0x0F, 0x20, 0x40, 0x5D, 103]):
        assert not kenhojo.verify_integrity(ef1, bad, ef3, ef4), ("0002", p)
    for p, bad in flips(ef3, [10, 50, 100, 335]):
        assert not kenhojo.verify_integrity(ef1, ef2, bad, ef4), ("0003", p)
    for p, bad in flips(ef4, [50, 200]):
        assert not kenhojo.verify_integrity(ef1, ef2, ef3, bad), ("0004", p)


def test_kenhojo_ap_info(hojo):
    ef = data(hojo, 0x0005)
    assert len(ef) == 256 and ef[:5] == bytes.fromhex("FF4082009F")
    assert ef[5:12] == bytes.fromhex("DF410401030E01")
    assert ef[12:15] == bytes.fromhex("DF4210")
    assert ef[31:36] == bytes.fromhex("DF43820080")
    assert ef[164:] == b"\xff" * 92
    info = kenhojo.parse_ap_info(ef)
    assert info["id"] == bytes.fromhex("01030E01") and len(info["key_id"]) == 16
    assert len(info["data"]) == 128 and info["data"][32:] == b"\xff" * 96


def test_kenhojo_session_key_and_signed_ap_key(keys, hojo):
    ef6 = data(hojo, 0x0006)
    assert ef6[:4] == bytes.fromhex("A1820109") and len(ef6) == 269
    assert tlv.decode_rsa_public_key(ef6[4:]).public_numbers() == \
        keys["session"].public_key().public_numbers()
    ef7, ef4 = data(hojo, 0x0007), data(hojo, 0x0004)
    assert ef7[:5] == bytes.fromhex("FF50820213") and ef7[5:9] == bytes.fromhex("DF518201")
    assert kenhojo.parse_signed_public_key(ef7).public_numbers() == \
        keys["ap"].public_key().public_numbers()
    assert kenhojo.verify_signed_public_key(ef7, ef4)
    for p, bad in flips(ef7, [3, 20, 200, 280, 535]):
        assert not kenhojo.verify_signed_public_key(bad, ef4), p


def test_kenhojo_keys_and_pins(keys, hojo):
    key = hojo.efs[0x0013]
    assert isinstance(key, KeyEF) and key.use == FREE and key.default and key.ops == ("sign",)
    assert pem_public(key) == keys["ap"].public_key().public_numbers()
    assert data(hojo, 0x0008) == b"\xff" * 16
    expect = {  # fid: (value, max, remaining, change, good, bad)
        0x0011: (b"1234", 3, 3, "iso", b"0000", b"12345"),
        0x0012: (b"", 3, 0, "none", None, None),
        0x0014: (NUMBER.encode(), 10, 10, "none", b"000000000000", b"12345678901"),
        0x0015: (COLLATION_B.encode(), 10, 10, "none", b"0" * 14, b"0" * 12),
    }
    for fid, (value, mx, rem, change, good, bad) in expect.items():
        pin = hojo.efs[fid]
        assert isinstance(pin, PinEF)
        assert (pin.value, pin.max_tries, pin.remaining, pin.change) == (value, mx, rem, change), fid
        if good is not None:
            assert pin.well_formed(good) and not pin.well_formed(bad), fid
    assert hojo.efs[0x0012].blocked


KENHOJO_TABLE = {  # spec §4.3, 券面入力補助AP column
    0x0011: {1, 2, 3, 6, 7},
    0x0014: {1, 3, 6, 7},
    0x0015: {2, 3, 6, 7},
}


def test_kenhojo_access_table(hojo):
    for pin, opened in KENHOJO_TABLE.items():
        for ef in (1, 2, 3, 6, 7):
            assert opens(hojo, pin, ef) == (ef in opened), (hex(pin), ef)
    for ef in (1, 2, 3, 6, 7):  # nothing protected is free
        assert hojo.efs[ef].read not in (FREE, NEVER)
    assert hojo.efs[4].read == FREE and hojo.efs[5].read == FREE
    assert not any(opens(hojo, 0x0012, ef) and hojo.efs[ef].read != FREE for ef in range(1, 9))


def test_kenhojo_build_refuses_a_foreign_signer(keys, cvc):
    with pytest.raises(ValueError, match="certified"):
        kenhojo.build(individual_number=NUMBER, name=NAME, address=ADDRESS, birth=BIRTH, sex="1",
                      pin="1234", collation_b=COLLATION_B, cvc=cvc, signer_key=keys["other"],
                      ap_key=keys["ap"], session_public_key=keys["session"].public_key())
    with pytest.raises(ValueError, match="PIN"):
        kenhojo.build(individual_number=NUMBER, name=NAME, address=ADDRESS, birth=BIRTH, sex="1",
                      pin="12345", collation_b=COLLATION_B, cvc=cvc, signer_key=keys["signer"],
                      ap_key=keys["ap"], session_public_key=keys["session"].public_key())


def test_challenge_signature_verifies_with_df51(keys, hojo):
    # §3.3 end: 80 2A 00 00 with the default key; result verifies against DF51.
    key = serialization.load_pem_private_key(hojo.efs[0x0013].key_pem, None)
    sig = key.sign(b"challenge", padding.PKCS1v15(), hashes.SHA256())
    kenhojo.parse_signed_public_key(data(hojo, 7)).verify(sig, b"challenge", padding.PKCS1v15(),
                                                          hashes.SHA256())


# -- kenkaku ------------------------------------------------------------------------------------

def test_kenkaku_age_record(keys, kaku):
    ef1, ef4 = data(kaku, 1), data(kaku, 4)
    assert ef1[:5] == bytes.fromhex("FF1082021E") and len(ef1) == 547
    assert ef1[5:16] == b"\xdf\x11\x08" + b"19800217"
    assert ef1[16:21] == bytes.fromhex("DF12820109")
    keys["signer"].public_key().verify(ef1[-256:], ef1[5:286], padding.PKCS1v15(), hashes.SHA256())
    parsed = kenkaku.parse_age_record(ef1)
    assert parsed["birth"] == "19800217"
    assert parsed["card_public_key"].public_numbers() == keys["card"].public_key().public_numbers()
    assert kenkaku.verify_age_record(ef1, ef4)
    for p, bad in flips(ef1, [3, 10, 100, 290, 546]):
        assert not kenkaku.verify_age_record(bad, ef4), p


def test_kenkaku_face_layout(keys, kaku):
    ef = data(kaku, 2)
    assert ef[:3] == b"\xff\x20\x82" and int.from_bytes(ef[3:5], "big") + 5 == len(ef)
    assert ef[5:8] == b"\xdf\x21\x12"
    offsets = [int.from_bytes(ef[8 + 2 * i:10 + 2 * i], "big") for i in range(9)]
    tags = [ef[o:o + 2] for o in offsets]
    assert tags == [bytes([0xDF, 0x22 + i]) for i in range(9)]
    face = kenkaku.parse_face(ef)
    assert face["birth"] == "19800217" and face["sex"] == "1" and face["expiry"] == "20350217"
    assert face["face_image"][:12] == bytes.fromhex("0000000C6A5020200D0A870A")
    assert face["name_image"][:8] == b"\x89PNG\r\n\x1a\n"
    assert face["card_public_key"].public_numbers() == keys["card"].public_key().public_numbers()


def test_kenkaku_df28_is_pkcs1_over_the_96_byte_digestinfo(keys, kaku):
    ef = data(kaku, 2)
    offsets = [int.from_bytes(ef[8 + 2 * i:10 + 2 * i], "big") for i in range(9)] + [len(ef)]
    tlvs = [ef[offsets[i]:offsets[i + 1]] for i in range(9)]
    recovered = keys["signer"].public_key().recover_data_from_signature(
        tlv.decode_one(tlvs[6]).value, padding.PKCS1v15(), None)
    info = algos.DigestInfo.load(recovered)
    assert info["digest_algorithm"]["algorithm"].native == "sha256"
    expected = (hashlib.sha256(tlvs[0] + tlvs[1] + tlvs[2]).digest() +
                hashlib.sha256(tlvs[3] + tlvs[4]).digest() + hashlib.sha256(tlvs[5]).digest())
    assert info["digest"].native == expected and recovered[:2] == b"\x30\x71"
    assert kenkaku.verify_face(ef, data(kaku, 4))


def test_kenkaku_face_flips(kaku):
    ef, ef4 = data(kaku, 2), data(kaku, 4)
    offsets = [int.from_bytes(ef[8 + 2 * i:10 + 2 * i], "big") for i in range(9)]
    signed_positions = [offsets[0] + 3, offsets[1] + 2, offsets[2] + 100, offsets[3] + 20,
                        offsets[4] + 20, offsets[5] + 200, offsets[6] + 50]
    for p, bad in flips(ef, signed_positions):
        assert not kenkaku.verify_face(bad, ef4), p
    # DF29 / DF2A come after the signature and are not signed (spec §3.3).
    unsigned = bytearray(ef)
    unsigned[offsets[7] + 3] = ord("9")
    assert kenkaku.verify_face(bytes(unsigned), ef4)
    assert not kenkaku.verify_face(ef, data(kaku, 1))  # not a CVC


def test_kenkaku_ap_info_and_number_image(keys, kaku, cvc):
    info = kenkaku.parse_ap_info(data(kaku, 3))
    assert info["id"] == bytes.fromhex("06030E01") and info["municipality_code"] == "13221"
    # §13.1: DF33 is 00 on the test card
    assert info["version"] == 0 and info["blob_key_id"] == b"TEST-CVC-ISSUER1"
    assert data(kaku, 3)[:5] == bytes.fromhex("FF3082013B")
    assert data(kaku, 4) == cvc and data(kaku, 6) == b"\xff" * 16
    ef5 = data(kaku, 5)
    assert ef5[:2] == b"\xff\x40"
    assert kenkaku.verify_number_image(ef5, cvc)
    img = tlv.find(tlv.expect(ef5, 0xFF40).children(), 0xDF41).value
    assert Image.open(io.BytesIO(img)).size == (72, 12)
    for p, bad in flips(ef5, [10, 60, len(ef5) - 300, len(ef5) - 1]):
        assert not kenkaku.verify_number_image(bad, cvc), p


def test_kenkaku_pins_and_key(keys, kaku):
    expect = {
        0x0011: (b"550217", 10, "none", b"123456", b"1234567"),
        0x0012: (COLLATION_B.encode(), 10, "none", b"0" * 14, b"0" * 13),
        0x0013: (NUMBER.encode(), 10, "none", b"0" * 12, b"0" * 14),
    }
    for fid, (value, mx, change, good, bad) in expect.items():
        pin = kaku.efs[fid]
        assert (pin.value, pin.max_tries, pin.remaining, pin.change) == (value, mx, mx, change)
        assert pin.well_formed(good) and not pin.well_formed(bad)
    key = kaku.efs[0x001A]
    assert key.use == FREE and key.default and key.ops == ("sign",)
    assert pem_public(key) == keys["card"].public_key().public_numbers()


KENKAKU_TABLE = {  # spec §4.3, 券面事項確認AP column (0003/0004 free)
    0x0013: {2, 3, 4, 5, 6},
    0x0012: {2, 3, 4, 6},
    0x0011: {1},
}


def test_kenkaku_access_table(kaku):
    assert kaku.aid == bytes.fromhex("D3921000310001010402")
    assert kaku.efs[3].read == FREE and kaku.efs[4].read == FREE  # §3.3: free
    for pin, opened in KENKAKU_TABLE.items():
        for ef in range(1, 7):
            assert opens(kaku, pin, ef) == (ef in opened or ef in (3, 4)), (hex(pin), ef)
    for ef in (1, 2, 5, 6):
        assert kaku.efs[ef].read not in (FREE, NEVER)


def test_kenkaku_build_checks_collation_b(keys, cvc):
    common_args = dict(individual_number=NUMBER, name=NAME, address=ADDRESS, birth=BIRTH, sex="1",
                       expiry=EXPIRY, security_code="2285", municipality_code="13221", cvc=cvc,
                       signer_key=keys["signer"], card_key=keys["card"])
    with pytest.raises(ValueError, match="security code"):
        kenkaku.build(collation_b="55021720351111", **common_args)
    with pytest.raises(ValueError, match="birth"):
        kenkaku.build(collation_b="55031720352285", **common_args)


# -- JPKI ---------------------------------------------------------------------------------------

def test_jpki_token_info(jp):
    ef = data(jp, 0x0006)
    assert len(ef) == 160 and ef[:32] == b"JPKIAPICCTOKEN2" + b" " * 17
    info = jpki.parse_token_info(ef)
    assert info["flags"] == 0x0000040D and info["max_pin_len"] == 16 and info["min_pin_len"] == 6
    assert info["memory"] == (0xFFFFFFFF,) * 4
    assert (info["hw_version"], info["fw_version"]) == ("03", "01")
    assert info["serial"] == "0000000020500003" and info["model"] == "E16R01NJ"
    assert info["utc_time"] == "2025102709300000"
    assert ef[96:100] == bytes.fromhex("0000040D")


def test_jpki_token_time_is_utc():
    jst = dt.timezone(dt.timedelta(hours=9))
    ef = jpki.encode_token_info(serial="1", time=dt.datetime(2025, 1, 1, 9, 0, tzinfo=jst))
    assert ef[144:160] == b"2025010100000000"
    with pytest.raises(ValueError):
        jpki.encode_token_info(serial="x" * 17, time=dt.datetime(2025, 1, 1))


def test_jpki_layout_with_signing_certificate(keys, certs, jp):
    assert jp.aid == bytes.fromhex("D392F000260100000001")
    assert data(jp, 0x0001) == certs["sign"] and jp.efs[0x0001].read == (0x001B,)
    assert data(jp, 0x000A) == certs["auth"] and jp.efs[0x000A].read == FREE
    assert data(jp, 0x0002) == certs["ca"] and jp.efs[0x0002].read == FREE
    assert data(jp, 0x000B) == certs["ca"] and jp.efs[0x000B].read == FREE
    assert data(jp, 0x0008) == bytes.fromhex("8F8F00")
    assert jp.efs[0x0009].read == NEVER and len(data(jp, 0x0009)) > 0
    assert jp.efs[0x0017].use == (0x0018,) and jp.efs[0x001A].use == (0x001B,)
    assert pem_public(jp.efs[0x0017]) == keys["auth"].public_key().public_numbers()
    assert pem_public(jp.efs[0x001A]) == keys["sign"].public_key().public_numbers()
    for fid in (0x0010, 0x0016):
        assert jp.efs[fid].use == NEVER and jp.efs[fid].ops == ()
    auth, sign = jp.efs[0x0018], jp.efs[0x001B]
    assert (auth.value, auth.max_tries, auth.remaining, auth.change) == (b"1234", 3, 3, "iso")
    assert (sign.value, sign.max_tries, sign.remaining, sign.change) == (b"TESTPASS1", 5, 5, "iso")
    assert auth.well_formed(b"0000") and not auth.well_formed(b"00000")
    assert sign.well_formed(b"ABC123") and not sign.well_formed(b"abc123")
    assert not sign.well_formed(b"ABC12") and not sign.well_formed(b"A" * 17)
    assert not any(k.default for k in jp.efs.values() if isinstance(k, KeyEF))


def test_jpki_without_signing_certificate(jp_child):
    assert 0x0001 not in jp_child.efs and 0x001A not in jp_child.efs
    assert data(jp_child, 0x0008) == bytes.fromhex("008F00")
    sign = jp_child.efs[0x001B]
    assert sign.max_tries == 5 and sign.remaining == 0 and sign.blocked
    assert jp_child.efs[0x0018].value == b"5678"


def test_jpki_refuses_inconsistent_input(keys, certs):
    base = dict(auth_cert_der=certs["auth"], auth_ca_der=certs["ca"], sign_ca_der=certs["ca"],
                auth_key=keys["auth"], auth_pin="1234", token_serial="1",
                token_time=dt.datetime(2025, 1, 1), inert_key=keys["other"])
    with pytest.raises(ValueError, match="together"):
        jpki.build(sign_cert_der=certs["sign"], **base)
    with pytest.raises(ValueError, match="public half"):
        jpki.build(**{**base, "auth_key": keys["sign"]})
    with pytest.raises(ValueError, match="DER header"):
        jpki.build(**{**base, "auth_cert_der": certs["auth"] + b"\x00"})
    with pytest.raises(ValueError, match="auth PIN"):
        jpki.build(**{**base, "auth_pin": "12a4"})
    with pytest.raises(ValueError, match="signing password"):
        jpki.build(sign_cert_der=certs["sign"], sign_key=keys["sign"], sign_pin="lower1", **base)


# -- 共通カードAP / 住基AP ------------------------------------------------------------------------

def test_common_ap(keys):
    app = common.build(card_serial="400000012719843", municipality_code="13221", expiry=EXPIRY,
                       key_reference=b"TEST-KEYREF-0001", auth_key=keys["juki"], pin="4321")
    assert app.aid == bytes.fromhex("D3921000310001010100")
    rec = app.efs[0x0001].records
    assert rec == [b"\x01\x1c" + b"400000012719843" + b"13221" + b"20350217"]
    assert app.efs[0x0001].read == FREE
    assert common.parse_card_info(rec[0]) == {"serial": "400000012719843",
                                              "municipality_code": "13221", "expiry": "20350217"}
    # §13.3: EF 0002 is record-structured (READ RECORD 00 B2 01 04 00), record 1 = the key reference
    assert app.efs[0x0002].records == [b"TEST-KEYREF-0001"] and app.efs[0x0002].read == FREE
    key = app.efs[0x0019]
    assert key.use == FREE and key.ops == ("internal_auth",)
    pin = app.efs[0x001C]
    assert (pin.value, pin.max_tries, pin.remaining, pin.change) == (b"4321", 3, 3, "jicsap")
    with pytest.raises(ValueError, match="card serial"):
        common.encode_card_info(card_serial="1234", municipality_code="13221", expiry=EXPIRY)


def test_juki_ap(keys):
    # §13.3: one record EF of unidentified content ([U]: the 住民票コード, AP-6), 0002 and 001C only
    app = juki.build(key_reference=b"TEST-KEYREF-0001", pin="4321", juminhyo_code="12345678901")
    assert app.aid == bytes.fromhex("D3921000310001010401")
    assert set(app.efs) == {0x0001, 0x0002, 0x001C}
    assert app.efs[0x0001].records == [b"\x01\x0b12345678901"]
    assert app.efs[0x0001].read == (0x001C,)
    assert juki.parse_juminhyo_code(app.efs[0x0001].records[0]) == "12345678901"
    assert app.efs[0x0002].records == [b"TEST-KEYREF-0001"] and app.efs[0x001C].change == "jicsap"
    with pytest.raises(ValueError):
        juki.encode_juminhyo_code("1234567890")


# -- MF GET DATA --------------------------------------------------------------------------------

def test_mf_get_data(keys, cvc):
    lower = kenhojo.encode_cvc(issuer_key_id=b"TEST-CVC-SUBJ-01", subject_key_id=b"TEST-CVC-LOWER-1",
                               subject_public_key=keys["card"].public_key(), issuer_key=keys["signer"])
    atr = bytes.fromhex("3BE000FF8131FE4514")
    objs = mf.build_get_data(card_id="400000012719843", municipality_code="13221", expiry=EXPIRY,
                             contact_atr=atr, cvc_upper=cvc, cvc_lower=lower)
    assert set(objs) == {0x0042, 0x0045, 0x0066, 0x00F0, 0x00F2, 0x00F7, 0x00F8, 0x7F21, 0x5F51}
    assert objs[0x5F51] == atr[1:]
    assert objs[0x0042] == b"TEST-CVC-ISSUER1" and objs[0x00F7] == b"TEST-CVC-SUBJ-01"
    assert objs[0x00F0] == b"13221" and objs[0x00F2] == b"20350217"
    # §13.3: 00F8/7F21 hold the CVC template's contents (5F4E … 5F37 …), not the 7F21 wrapper
    assert objs[0x00F8] == cvc[5:] and objs[0x7F21] == lower[5:]
    assert objs[0x00F8][:2] == b"\x5f\x4e" and mf.cvc_from_contents(objs[0x00F8]) == cvc
    gp = tlv.expect(objs[0x0066], 0x66)
    assert tlv.find(gp.children()[0].children(), 0x06).value == bytes.fromhex("2A864886FC6B01")
    assert kenhojo.verify_cvc(mf.cvc_from_contents(objs[0x7F21]), keys["signer"].public_key())
    no_lower = mf.build_get_data(card_id="X1", municipality_code="13221", expiry=EXPIRY,
                                 contact_atr=atr, cvc_upper=cvc)
    assert 0x7F21 not in no_lower
    with pytest.raises(ValueError, match="chain"):
        mf.build_get_data(card_id="X1", municipality_code="13221", expiry=EXPIRY,
                          contact_atr=atr, cvc_upper=lower, cvc_lower=cvc)
    with pytest.raises(ValueError, match="TS"):
        mf.build_get_data(card_id="X1", municipality_code="13221", expiry=EXPIRY,
                          contact_atr=atr[1:], cvc_upper=cvc)


# -- the image model accepts every built application ---------------------------------------------

def test_built_applications_survive_the_card_image_json(keys, hojo, kaku, jp, jp_child, cvc):
    juki_app = juki.build(key_reference=b"TEST-KEYREF-0001", pin="4321", juminhyo_code="12345678901")
    image = CardImage(applications=[jp, hojo, kaku, juki_app], label="test",
                      get_data=mf.build_get_data(card_id="X1", municipality_code="13221",
                                                 expiry=EXPIRY,
                                                 contact_atr=bytes.fromhex("3BE000FF8131FE4514"),
                                                 cvc_upper=cvc))
    back = CardImage.from_json(json.loads(json.dumps(image.to_json(), ensure_ascii=False)))
    for app in image.applications:
        other = back.application(app.name)
        assert other.aid == app.aid and set(other.efs) == set(app.efs)
        for fid, ef in app.efs.items():
            assert other.efs[fid] == ef, (app.name, hex(fid))
    child = CardImage(applications=[jp_child])
    assert CardImage.from_json(child.to_json()).pin("jpki", 0x001B).blocked


# -- through the card interpreter ----------------------------------------------------------------

def test_clients_read_and_verify_through_the_card(keys, hojo, kaku, jp_child):
    core = pytest.importorskip("mynaemu.card.core")
    card = core.Card(CardImage(applications=[jp_child, hojo, kaku]))
    card.power_on()

    def tx(hexstr):
        r = card.transmit(bytes.fromhex(hexstr))
        return r[:-2], r[-2:].hex().upper()

    # OpenSC bind on a card without a signing certificate: both retry queries answer 63Cn (§10.1).
    assert tx("00A4040C0AD392F000260100000001")[1] == "9000"
    assert tx("00A4020C020018")[1] == "9000" and tx("00200080")[1] == "63C3"
    assert tx("00A4020C02001B")[1] == "9000" and tx("00200080")[1] == "63C0"
    assert tx("00A4020C020001")[1] == "6A82"
    # kenhojo with the PIN by SFI (JSAPDU form), whole EFs with extended Le (§10.4).
    assert tx("00A4040C0AD3921000310001010408")[1] == "9000"
    assert tx("002000910431323334")[1] == "9000"
    efs = [tx(f"00B0{0x80 | f:02X}00000000")[0] for f in (1, 2, 3, 4)]
    assert [len(e) for e in efs[::2]] == [17, 336]
    assert kenhojo.verify_integrity(*efs)
    # kenkaku card face with 照合番号A (MYNA-RS flow, §10.2).
    assert tx("00A4040C0AD3921000310001010402")[1] == "9000"
    assert tx("00A4020C020013")[1] == "9000"
    assert tx("002000800C" + NUMBER.encode().hex())[1] == "9000"
    face, sw = tx("00B08200000000")
    assert sw == "9000" and kenkaku.verify_face(face, tx("00B08400000000")[0])
    assert tx("00B0810000")[1] == "6982"  # the age record needs the 生年月日 key
