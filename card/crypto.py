"""RSA helpers of the card and of everything that builds or checks what it holds.

COMPUTE DIGITAL SIGNATURE P1=00 pads its input exactly as given (spec §5.1), and the 券面 APs
sign DigestInfos that are not a standard hash (kenkaku DF28's 96-byte OCTET STRING, §3.3):
both need raw PKCS#1 v1.5 type-1 signing. The key checks, PEM form and PKCS#1 v1.5/SHA-256
signatures are shared by every AP builder (card/apps/*.py), the CVC (card/cvc.py) and the
back office's CVC issuer (issuance/pki/ca.py).
"""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

# DigestInfo prefixes (RFC 8017 §9.2 note 1): P1=00 signs a DigestInfo as given (spec §5.1);
# recognising one lets the fast library path produce the byte-identical signature.
_DIGEST_INFO = {
    bytes.fromhex("3021300906052b0e03021a05000414"): hashes.SHA1(),
    bytes.fromhex("302d300d06096086480165030402040500041c"): hashes.SHA224(),
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256(),
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512(),
}


def check_rsa2048(key, what: str) -> None:
    """Keys on and around the card are RSA-2048 with e = 65537 (spec §5.1)."""
    if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        raise TypeError(f"{what}: expected an RSA key object, got {type(key).__name__}")
    if key.key_size != 2048:
        raise ValueError(f"{what}: RSA-{key.key_size}, the card uses RSA-2048")
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    if pub.public_numbers().e != 65537:
        raise ValueError(f"{what}: public exponent must be 65537")


def public_of(key) -> rsa.RSAPublicKey:
    return key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key


def same_public_key(a, b) -> bool:
    return public_of(a).public_numbers() == public_of(b).public_numbers()


def key_pem(private_key) -> bytes:
    """PKCS#8 PEM, unencrypted, as KeyEF stores it."""
    return private_key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


def sign_sha256(private_key, data: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-256 (the card's signed records, spec §3.2/§3.3)."""
    return private_key.sign(bytes(data), padding.PKCS1v15(), hashes.SHA256())


def verify_sha256(public_key, signature: bytes, data: bytes) -> bool:
    try:
        public_of(public_key).verify(bytes(signature), bytes(data), padding.PKCS1v15(),
                                     hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_pkcs1_raw(public_key, signature: bytes, payload: bytes) -> bool:
    """True when `signature` is PKCS#1 v1.5 type 1 over exactly `payload`."""
    try:
        recovered = public_of(public_key).recover_data_from_signature(
            bytes(signature), padding.PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        return False
    return recovered == bytes(payload)


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


def sign_pkcs1_as_given(private_key, data: bytes) -> bytes:
    """PKCS#1 v1.5 type-1 padding of `data` exactly as given, then RSA (deterministic).

    COMPUTE DIGITAL SIGNATURE P1=00 (spec §5.1): a standard DigestInfo takes the library's
    path (the same bytes, faster), anything else sign_pkcs1_raw.
    """
    for prefix, algorithm in _DIGEST_INFO.items():
        if data.startswith(prefix) and len(data) == len(prefix) + algorithm.digest_size:
            return private_key.sign(data[len(prefix):], padding.PKCS1v15(), utils.Prehashed(algorithm))
    return sign_pkcs1_raw(private_key, data)


def pss_sha256() -> padding.PSS:
    """RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (COMPUTE DIGITAL SIGNATURE P1=04/05, §5.1)."""
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
