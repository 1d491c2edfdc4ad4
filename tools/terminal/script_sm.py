"""Terminal-side §13.2 vectors for card scripts, computed without mynaemu's SM code (card/sm.py).

Used by `mynaemu card script` (tools/terminal/script.py): the functions `sm86`, and the checks
`smdata=N:HEX` / `smprefix=N:HEX`, and the variables SM_KEY_BLOCK, SM_MAC_BLOCK, SM_MODULUS
(vectors/transcripts/sm_*.txt).

A fixed 32-byte key-delivery secret (SM_SECRET) and a fixed OAEP seed make SET SESSION KEY's
ciphertext deterministic for a given card key, so a transcript can hold an SM session: RSA-
OAEP (SHA-256, MGF1-SHA-256, empty label) is written out here by RFC 8017 §7.1.1 over
`pow(m, e, n)`, AES-128-CBC comes from `cryptography` with IV = AES-ECB(key, N).
"""
from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SM_SECRET = hashlib.sha256(b"mynaemu transcript SM secret").digest()      # 32 bytes
OAEP_SEED = hashlib.sha256(b"mynaemu transcript OAEP seed").digest()      # hLen = 32
SM_KEY = SM_SECRET[:16]                                                   # AES-128 (§13.2)


def _mgf1(seed: bytes, length: int) -> bytes:
    out, counter = b"", 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def oaep_encrypt(n: int, e: int, message: bytes, seed: bytes = OAEP_SEED) -> bytes:
    k = (n.bit_length() + 7) // 8
    h = 32
    if len(message) > k - 2 * h - 2:
        raise ValueError("message too long for OAEP")
    db = hashlib.sha256(b"").digest() + b"\x00" * (k - len(message) - 2 * h - 2) + b"\x01" + message
    masked_db = bytes(a ^ b for a, b in zip(db, _mgf1(seed, k - h - 1)))
    masked_seed = bytes(a ^ b for a, b in zip(seed, _mgf1(masked_db, h)))
    em = b"\x00" + masked_seed + masked_db
    return pow(int.from_bytes(em, "big"), e, n).to_bytes(k, "big")


def ef0006_numbers(ef0006: bytes) -> tuple[int, int]:
    """(n, e) of `A1 82 01 09 90 03 e 91 82 01 00 n` (§3.2 EF 0006)."""
    if ef0006[:6] != bytes.fromhex("A18201099003") or ef0006[9:13] != bytes.fromhex("91820100"):
        raise ValueError("EF 0006 is not the §3.2 public-key template")
    return int.from_bytes(ef0006[13:269], "big"), int.from_bytes(ef0006[6:9], "big")


def env(ef0006: bytes) -> dict:
    n, e = ef0006_numbers(ef0006)
    return {
        "SM_KEY_BLOCK": oaep_encrypt(n, e, bytes.fromhex("A0228020") + SM_SECRET),
        # §13.2: only A0 {80 20 ..} is accepted; the MAC-key form is refused with 6A80
        "SM_MAC_BLOCK": oaep_encrypt(n, e, bytes.fromhex("A0228120") + SM_SECRET),
        "SM_MODULUS": n.to_bytes(256, "big"),          # at the modulus: 6F00
    }


def _iv(n: int) -> bytes:
    enc = Cipher(algorithms.AES(SM_KEY), modes.ECB()).encryptor()
    return enc.update(n.to_bytes(16, "big")) + enc.finalize()


def sm86(n: int, plain) -> bytes:
    """`86 L 01 ‖ AES-CBC(ISO 7816-4 padded plain)` of message N under the transcript key."""
    plain = plain.encode("utf-8") if isinstance(plain, str) else bytes(plain)
    padded = plain + b"\x80" + b"\x00" * (-(len(plain) + 1) % 16)
    enc = Cipher(algorithms.AES(SM_KEY), modes.CBC(_iv(n))).encryptor()
    value = b"\x01" + enc.update(padded) + enc.finalize()
    length = bytes((len(value),)) if len(value) < 0x80 else (
        b"\x81" + bytes((len(value),)) if len(value) < 0x100 else b"\x82" + len(value).to_bytes(2, "big"))
    return b"\x86" + length + value


def open86(n: int, data: bytes) -> bytes:
    """The plaintext of an `86 L 01 ‖ C` answer to message N; ValueError if malformed."""
    if not data or data[0] != 0x86:
        raise ValueError("answer is not an 86 object")
    if data[1] < 0x80:
        length, pos = data[1], 2
    elif data[1] in (0x81, 0x82):
        w = data[1] - 0x80
        length, pos = int.from_bytes(data[2:2 + w], "big"), 2 + w
    else:
        raise ValueError("bad length")
    value = data[pos:]
    if len(value) != length or value[:1] != b"\x01" or (len(value) - 1) % 16:
        raise ValueError("not one 86 object with padding indicator 01")
    dec = Cipher(algorithms.AES(SM_KEY), modes.CBC(_iv(n))).decryptor()
    out = (dec.update(value[1:]) + dec.finalize()).rstrip(b"\x00")
    if not out.endswith(b"\x80"):
        raise ValueError("bad padding")
    return out[:-1]
