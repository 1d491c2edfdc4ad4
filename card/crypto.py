"""RSA primitives the card itself needs beyond the library's hashed signatures.

COMPUTE DIGITAL SIGNATURE P1=00 pads its input exactly as given (spec §5.1), and the 券面 APs
sign DigestInfos that are not a standard hash (kenkaku DF28's 96-byte OCTET STRING, §3.3):
both need raw PKCS#1 v1.5 type-1 signing.
"""
from __future__ import annotations


def sign_pkcs1_raw(private_key, payload: bytes) -> bytes:
    """PKCS#1 v1.5 type-1 padding over `payload` as given, then RSA (no hashing).

    Used for P1=00 input that is not a standard DigestInfo and for the 96-byte
    OCTET STRING of kenkaku DF28 (spec §3.3).
    """
    numbers = private_key.private_numbers()
    pub = numbers.public_numbers
    k = (private_key.key_size + 7) // 8
    payload = bytes(payload)
    if len(payload) > k - 11:
        raise ValueError(f"payload of {len(payload)} bytes too long for PKCS#1 v1.5 (max {k - 11})")
    em = b"\x00\x01" + b"\xff" * (k - 3 - len(payload)) + b"\x00" + payload
    m = int.from_bytes(em, "big")
    # CRT: the same result as pow(m, d, n), several times faster.
    s1 = pow(m, numbers.dmp1, numbers.p)
    s2 = pow(m, numbers.dmq1, numbers.q)
    h = (numbers.iqmp * (s1 - s2)) % numbers.p
    s = s2 + h * numbers.q
    if pow(s, pub.e, pub.n) != m:  # guard against a fault giving away the key
        raise ValueError("RSA signature self-check failed")
    return s.to_bytes(k, "big")


