"""card/cvc.py and card/crypto.py: the homes of what the APs and the CA borrowed from kenhojo.

The CVC (EF 0004, §3.2) and the RSA helpers live in their own modules; kenhojo keeps its old
names as the same objects, the other APs and issuance/pki/ca.py import the new homes (checked
on their source), and the core's P1=00 signing path is the crypto module's (§5.1).
"""
from __future__ import annotations

import ast
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mynaemu.card import crypto, cvc, tlv
from mynaemu.card.apps import kenhojo
from tests.support import REPO


@pytest.fixture(scope="module")
def keys():
    return [rsa.generate_private_key(65537, 2048) for _ in range(2)]


def _imported_modules(relpath: str) -> set[str]:
    tree = ast.parse((REPO / relpath).read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_kenhojo_names_are_the_new_homes():
    for name in ("CVC", "encode_cvc", "parse_cvc", "verify_cvc", "cvc_public_key", "T_CVC", "SIZE_CVC",
                 "KEY_ID_LEN", "CVC_BODY_LEN"):
        assert getattr(kenhojo, name) is getattr(cvc, name), name
    for name in ("check_rsa2048", "public_of", "same_public_key", "key_pem", "sign_sha256",
                 "verify_sha256", "verify_pkcs1_raw"):
        assert getattr(kenhojo, name) is getattr(crypto, name), name
    assert kenhojo.with_filler is tlv.with_filler and kenhojo.only_filler_after is tlv.only_filler_after


@pytest.mark.parametrize("relpath", ["issuance/pki/ca.py", "card/apps/common.py", "card/apps/jpki.py",
                                     "card/apps/kenkaku.py", "card/apps/mf.py", "card/sm.py",
                                     "card/describe.py"])
def test_nothing_borrows_from_kenhojo_what_has_a_home(relpath):
    imported = _imported_modules(relpath)
    borrowed = {m for m in imported if m.startswith("mynaemu.card.apps.kenhojo.")}
    homes = {"CVC", "encode_cvc", "parse_cvc", "verify_cvc", "cvc_public_key", "T_CVC", "SIZE_CVC",
             "check_rsa2048", "key_pem", "same_public_key", "sign_sha256", "verify_sha256",
             "verify_pkcs1_raw", "with_filler", "only_filler_after"}
    assert not {m.rsplit(".", 1)[1] for m in borrowed} & homes, borrowed
    source = (REPO / relpath).read_text(encoding="utf-8")
    for name in homes:
        assert f"kenhojo.{name}(" not in source, (relpath, name)


def test_the_ca_imports_no_application_module():
    assert not {m for m in _imported_modules("issuance/pki/ca.py") if m.startswith("mynaemu.card.apps")}


def test_cvc_round_trip_and_signature(keys):
    issuer, subject = keys
    data = cvc.encode_cvc(issuer_key_id=b"I" * 16, subject_key_id=b"S" * 16,
                          subject_public_key=subject.public_key(), issuer_key=issuer)
    assert len(data) == cvc.SIZE_CVC == 568
    parsed = cvc.parse_cvc(data + b"\xff" * 8)              # trailing filler allowed
    assert (parsed.issuer_key_id, parsed.subject_key_id) == (b"I" * 16, b"S" * 16)
    assert len(parsed.body) == cvc.CVC_BODY_LEN
    assert crypto.same_public_key(parsed.public_key, subject)
    assert cvc.verify_cvc(data, issuer.public_key())
    assert not cvc.verify_cvc(data, subject.public_key())
    tampered = bytearray(data)
    tampered[10] ^= 1
    assert not cvc.verify_cvc(bytes(tampered), issuer.public_key())
    with pytest.raises(ValueError, match="16 bytes"):
        cvc.encode_cvc(issuer_key_id=b"I" * 15, subject_key_id=b"S" * 16,
                       subject_public_key=subject.public_key(), issuer_key=issuer)
    with pytest.raises(TypeError, match="private key"):
        cvc.encode_cvc(issuer_key_id=b"I" * 16, subject_key_id=b"S" * 16,
                       subject_public_key=subject.public_key(), issuer_key=issuer.public_key())


@pytest.mark.parametrize("payload", [
    bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(b"x").digest(),   # SHA-256 DI
    bytes.fromhex("3021300906052b0e03021a05000414") + hashlib.sha1(b"x").digest(),            # SHA-1 DI
    bytes.fromhex("3031300d060960864801650304020105000420") + b"\x00" * 31,                   # short: raw
    b"not a DigestInfo at all",
])
def test_the_fast_signing_path_gives_the_raw_path_bytes(keys, payload):
    key = keys[0]
    assert crypto.sign_pkcs1_as_given(key, payload) == crypto.sign_pkcs1_raw(key, payload)
    assert crypto.verify_pkcs1_raw(key.public_key(), crypto.sign_pkcs1_as_given(key, payload), payload)


def test_pss_parameters(keys):
    key = keys[0]
    pss = crypto.pss_sha256()
    assert isinstance(pss, padding.PSS)
    sig = key.sign(b"m", pss, hashes.SHA256())
    key.public_key().verify(sig, b"m", padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                            hashes.SHA256())


@pytest.mark.parametrize("data, offset, want", [
    (bytes.fromhex("7F21820233"), 0, (0x7F21, 5, 0x233)),
    (bytes.fromhex("FF2065"), 0, (0xFF20, 3, 0x65)),
    (bytes.fromhex("00FF20810100"), 1, (0xFF20, 4, 1)),
    (bytes.fromhex("DF2108"), 0, (0xDF21, 3, 8)),
])
def test_decode_header_reads_a_header_without_its_value(data, offset, want):
    assert tlv.decode_header(data, offset) == want


@pytest.mark.parametrize("data", [b"", bytes.fromhex("3080"), bytes.fromhex("FF"), bytes.fromhex("3085"),
                                  bytes.fromhex("308201"), bytes.fromhex("7F")])
def test_decode_header_refuses_malformed_headers(data):
    with pytest.raises(tlv.TLVError):
        tlv.decode_header(data)


def test_decode_one_still_checks_the_value_fits():
    with pytest.raises(tlv.TLVError, match="claims 2 value bytes"):
        tlv.decode_one(bytes.fromhex("DF210201"))
    item = tlv.decode_one(bytes.fromhex("00DF210201AA"), 1)
    assert (item.tag, item.value, item.header_len, item.offset) == (0xDF21, b"\x01\xaa", 3, 1)
