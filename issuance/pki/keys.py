"""RSA key generation for cards and TEST CAs: random, or deterministic from a seeded RNG.

Cards and CAs of the TEST back office use RSA-2048 with e = 65537 (card-interface.md §7.1,
§7.2, §7.3). Random keys come from `cryptography`. Deterministic keys (fixtures, test vectors,
the default TEST PKI) are built here from a `random.Random`: that RNG is NOT a cryptographic
generator, so such keys are for tests and demos only, never for anything that must be secret.

Stability: only `random.Random(int)` seeding and `getrandbits` are used; both produce the same
stream on every CPython version since 3.2, so a given seed/label yields the same key everywhere.
"""
from __future__ import annotations

import hashlib
import math
import random

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PUBLIC_EXPONENT = 65537  # spec §7.1 / §7.3: e = 65537 on every JPKI key

# Odd primes below this bound sieve candidates before any Miller-Rabin round. 2^16 removes
# about 90 % of odd candidates; a larger bound costs more sieving than it saves.
_SIEVE_BOUND = 1 << 16
# Odd offsets examined per sieve window; one 1024-bit prime is expected within ~355 odd numbers.
_WINDOW = 4096
# Miller-Rabin rounds with random bases. FIPS 186-5 table B.1 asks for 5 rounds for the
# 1024-bit probable primes of a 2048-bit key (error < 2^-100); we run 8 for margin. Each round
# is one 1024-bit modexp (~3 ms in CPython), so rounds dominate the cost of an accepted prime.
_MR_ROUNDS = 8


def _small_primes(bound: int) -> list[int]:
    sieve = bytearray([1]) * bound
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(bound - 1) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, bound, i)))
    return [i for i in range(3, bound) if sieve[i]]


_SMALL_PRIMES = _small_primes(_SIEVE_BOUND)


def derive_rng(seed, label: str) -> random.Random:
    """A `random.Random` determined by (seed, label): SHA-256 of f"{seed}/{label}" as the seed.

    Different labels give independent streams from one project seed (e.g. "auth-ca/2025").
    """
    digest = hashlib.sha256(f"{seed}/{label}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _is_probable_prime(n: int, rng: random.Random, rounds: int = _MR_ROUNDS) -> bool:
    """Miller-Rabin with `rounds` bases drawn from `rng` (n is odd and larger than the sieve)."""
    d = n - 1
    s = (d & -d).bit_length() - 1
    d >>= s
    for _ in range(rounds):
        a = 2 + rng.getrandbits(n.bit_length()) % (n - 3)
        x = pow(a, d, n)
        if x == 1 or x == n - 1:
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _random_prime(bits: int, rng: random.Random) -> int:
    """A probable prime of exactly `bits` bits with its top two bits set and p mod e != 1.

    Search: draw an odd start with the top two bits set, sieve a window of odd offsets with
    the small primes, run Miller-Rabin on the survivors in order; redraw when a window is used
    up or would overflow the bit length.
    """
    top = (1 << (bits - 1)) | (1 << (bits - 2))
    while True:
        start = rng.getrandbits(bits) | top | 1
        if start + 2 * _WINDOW >= 1 << bits:
            continue
        composite = bytearray(_WINDOW)
        for p in _SMALL_PRIMES:
            # first k with start + 2k ≡ 0 (mod p); p is odd so 2 is invertible mod p
            k = (-start * ((p + 1) // 2)) % p
            if k < _WINDOW:
                composite[k::p] = b"\x01" * len(range(k, _WINDOW, p))
        for k in range(_WINDOW):
            if composite[k]:
                continue
            candidate = start + 2 * k
            # gcd(e, p-1) = 1; e is prime, so this only excludes p ≡ 1 (mod e)
            if candidate % PUBLIC_EXPONENT == 1:
                continue
            if _is_probable_prime(candidate, rng):
                return candidate


def _key_from_primes(p: int, q: int) -> rsa.RSAPrivateKey:
    e = PUBLIC_EXPONENT
    if p < q:
        p, q = q, p  # conventional order; iqmp = q^-1 mod p
    n = p * q
    lam = math.lcm(p - 1, q - 1)  # Carmichael function: the smallest valid d (FIPS 186-5)
    d = pow(e, -1, lam)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=d % (p - 1),
        dmq1=d % (q - 1),
        iqmp=pow(q, -1, p),
        public_numbers=rsa.RSAPublicNumbers(e, n),
    )
    return numbers.private_key()


def generate_rsa_key(bits: int = 2048, rng: random.Random | None = None) -> rsa.RSAPrivateKey:
    """An RSA private key with e = 65537 and a modulus of exactly `bits` bits.

    rng=None: cryptography's (OpenSSL's) generator. With an rng: deterministic for that rng's
    state; p and q have bits//2 and bits - bits//2 bits with their top two bits set (so n has
    exactly `bits` bits), |p - q| > 2^(bits/2 - 100) (FIPS 186-5 A.1.3) and gcd(e, p-1) =
    gcd(e, q-1) = 1.
    """
    if not isinstance(bits, int) or isinstance(bits, bool):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    if bits < 1024:
        raise ValueError(f"RSA keys below 1024 bits are not supported, got {bits}")
    if rng is None:
        return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits)
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    p_bits = bits - bits // 2
    q_bits = bits // 2
    min_distance = 1 << (bits // 2 - 100)
    p = _random_prime(p_bits, rng)
    while True:
        q = _random_prime(q_bits, rng)
        if abs(p - q) > min_distance:
            break
    key = _key_from_primes(p, q)
    if key.key_size != bits:  # cannot happen with the top-two-bits rule; guard the invariant
        raise AssertionError(f"generated a {key.key_size}-bit modulus, wanted {bits}")
    return key


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (the form card images keep, see card/image.py KeyEF)."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"expected an RSA private key, got {type(key).__name__}")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes) -> rsa.RSAPrivateKey:
    """Parse an unencrypted PEM private key; it must be RSA."""
    if isinstance(data, str):
        data = data.encode("ascii")
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"expected PEM bytes, got {type(data).__name__}")
    try:
        key = serialization.load_pem_private_key(bytes(data), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"expected an RSA private key, got {type(key).__name__}")
    return key
