"""The card-verifiable certificate (CVC): EF 0004 of both 券面 APs and the MF chain (00F8/7F21).

`7F21 { 5F4E body, 5F37 signature }`, 568 bytes (spec §3.2 EF 0004): the body is
layouts.CVC_BODY (issuer key id, subject key id, RSA-2048 public key), signed with
PKCS#1 v1.5/SHA-256 by the CVC issuer key, which the TEST back office holds
(issuance/pki/ca.py). The APs (card/apps/kenhojo.py, kenkaku.py, mf.py) and the CA import it
from here.
"""
from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.card import layouts, tlv
from mynaemu.card.crypto import check_rsa2048, public_of, sign_sha256, verify_sha256

T_CVC, T_CVC_BODY, T_CVC_SIG = 0x7F21, 0x5F4E, 0x5F37
SIZE_CVC = 568
KEY_ID_LEN = 16
CVC_BODY_LEN = 297


@dataclasses.dataclass(frozen=True)
class CVC:
    issuer_key_id: bytes      # 証明者鍵ID
    subject_key_id: bytes     # 被証明者鍵ID
    public_key: rsa.RSAPublicKey
    body: bytes               # the 297-byte 5F4E value that is signed
    signature: bytes


def encode_cvc(*, issuer_key_id: bytes, subject_key_id: bytes, subject_public_key,
               issuer_key) -> bytes:
    """`7F21 { 5F4E body, 5F37 signature }`, 568 bytes (spec §3.2 EF 0004).

    body = issuer key id (16) + subject key id (16) + `90 03 010001 91 82 0100 <256>`; the
    signature is PKCS#1 v1.5/SHA-256 over the body by the CVC issuer key.
    """
    for value, what in ((issuer_key_id, "issuer_key_id"), (subject_key_id, "subject_key_id")):
        if not isinstance(value, (bytes, bytearray)) or len(value) != KEY_ID_LEN:
            raise ValueError(f"{what} must be {KEY_ID_LEN} bytes")
    check_rsa2048(subject_public_key, "CVC subject key")
    check_rsa2048(issuer_key, "CVC issuer key")
    if not isinstance(issuer_key, rsa.RSAPrivateKey):
        raise TypeError("issuer_key must be a private key (it signs the CVC)")
    body = layouts.build(layouts.CVC_BODY, {
        "issuer_key_id": bytes(issuer_key_id), "subject_key_id": bytes(subject_key_id),
        "key": {"modulus": public_of(subject_public_key).public_numbers().n}}, "CVC body")
    out = tlv.encode(T_CVC, tlv.encode(T_CVC_BODY, body) +
                     tlv.encode(T_CVC_SIG, sign_sha256(issuer_key, body)))
    assert len(out) == SIZE_CVC
    return out


def parse_cvc(data: bytes) -> CVC:
    """Decode a CVC (trailing filler allowed); raises tlv.TLVError on a malformed one.

    The 7F21/5F4E/5F37 wrapper is BER (card/tlv.py); the body is layouts.CVC_BODY.
    """
    outer = tlv.expect(data, T_CVC)
    items = outer.children()
    if [i.tag for i in items] != [T_CVC_BODY, T_CVC_SIG]:
        raise tlv.TLVError("CVC must hold 5F4E then 5F37")
    body = items[0].value
    try:
        fields = layouts.parse(layouts.CVC_BODY, body, "CVC body")
    except layouts.LayoutError as exc:
        raise tlv.TLVError(str(exc)) from None
    key = rsa.RSAPublicNumbers(65537, fields.key.modulus).public_key()
    return CVC(fields.issuer_key_id, fields.subject_key_id, key, body, items[1].value)


def verify_cvc(ef0004: bytes, issuer_public_key) -> bool:
    """True when the CVC is well formed and signed by `issuer_public_key`."""
    try:
        cvc = parse_cvc(ef0004)
    except (tlv.TLVError, ValueError):
        return False
    return verify_sha256(issuer_public_key, cvc.signature, cvc.body)


def cvc_public_key(ef0004: bytes) -> rsa.RSAPublicKey:
    return parse_cvc(ef0004).public_key
