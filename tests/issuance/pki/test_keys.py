"""Deterministic and random RSA key generation, seeds, PEM round trips (issuance/pki/keys.py)."""
import hashlib
import math
import random

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mynaemu.issuance.pki.keys import (
    PUBLIC_EXPONENT, _is_probable_prime, _SMALL_PRIMES, derive_rng, generate_rsa_key, load_private_key_pem,
    private_key_pem,
)


@pytest.fixture(scope="module")
def key_a():
    return generate_rsa_key(rng=derive_rng("test-seed", "card/1"))


def test_derive_rng_is_sha256_of_seed_and_label():
    expected = random.Random(int.from_bytes(hashlib.sha256(b"s/l").digest(), "big")).getrandbits(64)
    assert derive_rng("s", "l").getrandbits(64) == expected
    assert derive_rng("s", "l").getrandbits(64) != derive_rng("s", "m").getrandbits(64)


def test_derive_rng_stream_is_pinned():
    # Pins the stream so a change of derivation (or of CPython's Mersenne Twister seeding) is seen.
    assert derive_rng("mynaemu", "pin").getrandbits(32) == 1670421662


def test_deterministic_key_is_pinned(key_a):
    # The same seed must give the same key on every Python/cryptography version (test vectors
    # and the default TEST PKI depend on it).
    assert hex(key_a.public_key().public_numbers().n).startswith("0xce3aff731ca605b00d")


def test_deterministic_key_shape(key_a):
    numbers = key_a.private_numbers()
    p, q, d = numbers.p, numbers.q, numbers.d
    n = numbers.public_numbers.n
    assert key_a.key_size == 2048 and n.bit_length() == 2048
    assert numbers.public_numbers.e == PUBLIC_EXPONENT == 65537
    assert p * q == n
    assert p.bit_length() == 1024 and q.bit_length() == 1024
    assert p >> 1022 == 0b11 and q >> 1022 == 0b11  # top two bits set
    assert abs(p - q) > 1 << (1024 - 100)
    assert math.gcd(65537, p - 1) == 1 and math.gcd(65537, q - 1) == 1
    assert (65537 * d) % math.lcm(p - 1, q - 1) == 1
    assert numbers.dmp1 == d % (p - 1) and numbers.dmq1 == d % (q - 1)
    assert (numbers.iqmp * q) % p == 1
    check = random.Random(7)
    assert _is_probable_prime(p, check, rounds=20) and _is_probable_prime(q, check, rounds=20)


def test_same_seed_same_key_different_label_different_key(key_a):
    again = generate_rsa_key(rng=derive_rng("test-seed", "card/1"))
    other = generate_rsa_key(rng=derive_rng("test-seed", "card/2"))
    assert again.private_numbers() == key_a.private_numbers()
    assert other.public_key().public_numbers().n != key_a.public_key().public_numbers().n


def test_deterministic_key_signs_and_verifies(key_a):
    sig = key_a.sign(b"hello", padding.PKCS1v15(), hashes.SHA256())
    key_a.public_key().verify(sig, b"hello", padding.PKCS1v15(), hashes.SHA256())


def test_other_sizes_have_exact_bit_length():
    for bits in (1024, 1025, 1536):
        key = generate_rsa_key(bits, rng=derive_rng("sizes", str(bits)))
        assert key.key_size == bits


def test_random_key():
    key = generate_rsa_key()
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048 and key.public_key().public_numbers().e == 65537


def test_miller_rabin_rejects_composites_and_accepts_primes():
    rng = random.Random(1)
    # Carmichael numbers and a product of two large primes
    for composite in (561, 41041, 825265, 321197185, (2**89 - 1) * (2**107 - 1)):
        assert not _is_probable_prime(composite, rng, rounds=20)
    for prime in (2**127 - 1, 2**521 - 1, 65537):
        assert _is_probable_prime(prime, rng, rounds=20)
    assert _SMALL_PRIMES[:5] == [3, 5, 7, 11, 13] and 65521 in _SMALL_PRIMES


def test_pem_round_trip(key_a):
    pem = private_key_pem(key_a)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert load_private_key_pem(pem).private_numbers() == key_a.private_numbers()
    assert load_private_key_pem(pem.decode()).private_numbers() == key_a.private_numbers()


def test_bad_inputs():
    with pytest.raises(ValueError, match="1024"):
        generate_rsa_key(512, rng=random.Random(1))
    with pytest.raises(TypeError):
        generate_rsa_key(2048.0)
    with pytest.raises(TypeError, match="random.Random"):
        generate_rsa_key(2048, rng=42)
    with pytest.raises(ValueError, match="PEM"):
        load_private_key_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(TypeError):
        private_key_pem(b"not a key")
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import serialization
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ValueError, match="RSA"):
        load_private_key_pem(ec_pem)
