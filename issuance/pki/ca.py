"""The TEST certificate authorities: JPKI-shaped auth/sign CAs, the 券面AP CVC issuer, the default PKI.

- TestCA: a self-signed CA of kind "auth" (利用者証明用) or "sign" (署名用) that issues
  end-entity certificates with the profiles of issuance/pki/profiles.py (card-interface.md §7).
- CvcIssuer: the key that signs the card-verifiable certificates (CVC) in EF 0004 of the
  券面事項入力補助AP and 券面AP (§3.2, §3.3): `7F21 { 5F4E body(297), 5F37 signature(256) }`,
  body = issuer key id (16) ‖ subject key id (16) ‖ `90 03 010001 91 82 0100 <modulus>`.
  Its key id has the card's own form (§13.1, mynaemu.card.keyid) in the TEST hierarchy's
  `6…` series (`6000023/NNN`), so it can never be taken for a production (`5…`) id.
- TestPKI / default_test_pki(): the project's fixed TEST hierarchy, derived deterministically
  from PROJECT_SEED (so vectors/certs/*.pem can be reproduced byte for byte). Its private keys
  are therefore public: it serves the vectors and stand-alone personas only, never a store
  (each store has random CAs of its own, store_pki.py). Cached per process
  and on disk under platformdirs.user_cache_dir("mynaemu") (file name keyed by the cache format
  version and a hash of the shaping modules) so a new process does not spend about a second
  regenerating keys. A cache file that is unreadable or inconsistent is ignored and rewritten.

Revocation (CRL/OCSP) is built elsewhere on top of TestCA.key / TestCA.certificate.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import logging
import random
import secrets
from pathlib import Path

import platformdirs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mynaemu.issuance.pki import profiles
from mynaemu.issuance.identity import Identity
from mynaemu.issuance.pki.keys import (
    PUBLIC_EXPONENT, derive_rng, generate_rsa_key, load_private_key_pem, private_key_pem,
)
from mynaemu.card import keyid, tlv
from mynaemu.card import cvc as card_cvc
from mynaemu.card.image import write_file_atomic

from mynaemu.issuance.pki.profiles import AUTH, SIGN, make_issue_id  # noqa: F401  (make_issue_id re-exported)

log = logging.getLogger(__name__)

PROJECT_SEED = "mynaemu-test-pki-v1"
# The production CAs live 10 years in generations (§7.1). The default TEST CAs instead span
# 2015-01-01 .. 2049-12-31 (the last instant UTCTime can express), so the workflow can issue,
# renew and expire cards on any test date without a CA rollover getting in the way.
DEFAULT_NOT_BEFORE = _dt.datetime(2015, 1, 1, tzinfo=_dt.timezone.utc)
DEFAULT_YEARS = 35
DEFAULT_GENERATION = "2015"  # named after the year of issue, like the production generations (§7.1)
# Bump when the cache document's layout changes. The cache file name also carries a hash of
# the modules that shape the default PKI (seed, profiles, key generation), so editing any of
# them can never let a process reuse a PKI built by older code.
PKI_CACHE_VERSION = 1
_SHAPING_MODULES = ("ca.py", "profiles.py", "keys.py", "identity.py")
CACHE_FORMAT = "mynaemu-test-pki"

# §13.1: the TEST CVC CA names itself 6000023/NNN (production's 券面事項確認AP CVC issuer is 5000023).
CVC_ISSUER_NUMBER = "6000023"
CVC_KEY_ID_LENGTH = card_cvc.KEY_ID_LEN  # 証明者鍵ID / 被証明者鍵ID are 16 bytes (§3.2 EF 0004)
CVC_LENGTH = card_cvc.SIZE_CVC


def _check_rsa_2048(public_key, what: str) -> rsa.RSAPublicKey:
    # spec §7.1-§7.3 and §3.2: every key in these structures is RSA-2048 with e = 65537
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise TypeError(f"{what} must be an RSA public key, got {type(public_key).__name__}")
    numbers = public_key.public_numbers()
    if public_key.key_size != 2048 or numbers.e != PUBLIC_EXPONENT:
        raise ValueError(f"{what} must be RSA-2048 with e=65537, got {public_key.key_size} bits, e={numbers.e}")
    return public_key


def _serial_source(rng: random.Random | None) -> random.Random:
    return rng if rng is not None else random.SystemRandom()


@dataclasses.dataclass(frozen=True)
class TestCA:
    """A TEST CA of `kind` "auth" or "sign": its private key and self-signed certificate."""

    __test__ = False  # not a pytest test class despite the name

    kind: str
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    generation: str = "2026"

    def __post_init__(self):
        profiles._kind(self.kind)
        if not isinstance(self.key, rsa.RSAPrivateKey):
            raise TypeError(f"key must be an RSA private key, got {type(self.key).__name__}")
        if not isinstance(self.certificate, x509.Certificate):
            raise TypeError(f"certificate must be an x509.Certificate, got {type(self.certificate).__name__}")
        if self.certificate.public_key() != self.key.public_key():
            raise ValueError("the CA certificate does not certify the CA key")
        if self.certificate.subject != profiles.ca_name(self.kind):
            raise ValueError(f"the CA certificate is not a {self.kind} TEST CA certificate")
        if not (isinstance(self.generation, str) and len(self.generation) == 4 and self.generation.isdigit()):
            raise ValueError(f"generation must be a 4-digit year, got {self.generation!r}")

    @classmethod
    def create(
        cls,
        kind: str,
        *,
        key: rsa.RSAPrivateKey | None = None,
        rng: random.Random | None = None,
        not_before: _dt.datetime,
        years: int = 10,
        generation: str = "2026",
    ) -> "TestCA":
        """Make a CA: a key (given, or from `rng`, or random) and its self-signed certificate.

        With an rng the key (when not given) and then the serial are drawn from it, so equal
        rng states give byte-identical certificates. The generation is a label only: all
        generations of a kind share one DN (§7.1).
        """
        profiles._kind(kind)
        if key is None:
            key = generate_rsa_key(2048, rng)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError(f"key must be an RSA private key, got {type(key).__name__}")
        _check_rsa_2048(key.public_key(), "CA key")
        start, end = profiles.ca_validity(not_before, years)
        serial = profiles.random_ca_serial(_serial_source(rng))
        name = profiles.ca_name(kind)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(start)
            .not_valid_after(end)
        )
        for value, critical in profiles.ca_extensions(kind, key.public_key()):
            builder = builder.add_extension(value, critical=critical)
        certificate = builder.sign(key, hashes.SHA256(), rsa_padding=padding.PKCS1v15())
        return cls(kind, key, certificate, generation)

    # --- properties ---------------------------------------------------------------------
    @property
    def name(self) -> x509.Name:
        return self.certificate.subject

    @property
    def subject_key_identifier(self) -> x509.SubjectKeyIdentifier:
        return self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    # --- issuing ------------------------------------------------------------------------
    def _validity(self, not_before, not_after) -> tuple[_dt.datetime, _dt.datetime]:
        start = profiles.utc_time(not_before, "not_before")
        end = profiles.utc_time(not_after, "not_after")
        if not start < end:
            raise ValueError(f"not_before {start.isoformat()} must be earlier than not_after {end.isoformat()}")
        # A CA does not certify beyond its own validity period.
        ca_start = self.certificate.not_valid_before_utc
        ca_end = self.certificate.not_valid_after_utc
        if start < ca_start or end > ca_end:
            raise ValueError(
                f"validity {start.isoformat()}..{end.isoformat()} is outside the CA's "
                f"{ca_start.isoformat()}..{ca_end.isoformat()}"
            )
        return start, end

    def _issue(self, subject, public_key, serial, not_before, not_after, extensions) -> x509.Certificate:
        _check_rsa_2048(public_key, "end-entity key")
        start, end = self._validity(not_before, not_after)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(profiles.check_serial(serial))
            .not_valid_before(start)
            .not_valid_after(end)
        )
        for value, critical in extensions:
            builder = builder.add_extension(value, critical=critical)
        return builder.sign(self.key, hashes.SHA256(), rsa_padding=padding.PKCS1v15())

    def _require_kind(self, kind: str) -> None:
        if self.kind != kind:
            raise ValueError(f"this is the {self.kind} CA; {kind} certificates come from the {kind} CA")

    def issue_auth(self, public_key, *, serial: int, not_before: _dt.datetime,
                   not_after: _dt.datetime, issue_id: str) -> x509.Certificate:
        """A 利用者証明用 (auth) end-entity certificate (§7.2 profile, see profiles.py)."""
        self._require_kind(AUTH)
        return self._issue(profiles.auth_subject(issue_id), public_key, serial, not_before, not_after,
                           profiles.auth_extensions(self.subject_key_identifier))

    def issue_sign(self, public_key, identity: Identity, *, serial: int, not_before: _dt.datetime,
                   not_after: _dt.datetime, issue_id: str) -> x509.Certificate:
        """A 署名用 (signing) end-entity certificate carrying the holder's 基本4情報 (§7.3)."""
        self._require_kind(SIGN)
        if not isinstance(identity, Identity):
            raise TypeError(f"identity must be an Identity, got {type(identity).__name__}")
        subject = profiles.sign_subject(identity.prefecture_romaji, identity.city_romaji, issue_id)
        return self._issue(subject, public_key, serial, not_before, not_after,
                           profiles.sign_extensions(identity, self.subject_key_identifier))


@dataclasses.dataclass(frozen=True)
class CvcIssuer:
    """The TEST issuer of the 券面 APs' card-verifiable certificates (§3.2 / §3.3 EF 0004)."""

    key: rsa.RSAPrivateKey
    key_id: bytes

    def __post_init__(self):
        if not isinstance(self.key, rsa.RSAPrivateKey):
            raise TypeError(f"key must be an RSA private key, got {type(self.key).__name__}")
        _check_rsa_2048(self.key.public_key(), "CVC issuer key")
        if not isinstance(self.key_id, bytes) or len(self.key_id) != CVC_KEY_ID_LENGTH:
            raise ValueError(f"key_id must be {CVC_KEY_ID_LENGTH} bytes")
        try:
            kid = keyid.parse(self.key_id)
        except keyid.KeyIdError as exc:
            raise ValueError(f"a TEST CVC issuer key id has the §13.1 form: {exc}") from None
        if not kid.is_test:
            raise ValueError(f"a TEST CVC issuer key id is in the {keyid.TEST_SERIES}… series, got {kid}")

    @classmethod
    def create(cls, *, key: rsa.RSAPrivateKey | None = None, rng: random.Random | None = None) -> "CvcIssuer":
        """A new issuer `6000023/NNN`; key (when not given) then the group NNN (001-999) come from rng."""
        if key is None:
            key = generate_rsa_key(2048, rng)
        group = rng.randrange(1, 1000) if rng is not None else 1 + secrets.randbelow(999)
        return cls(key, keyid.make_test_id(CVC_ISSUER_NUMBER, group))

    @property
    def key_id_text(self) -> str:
        """The id as printed, e.g. `6000023/001` (§13.1)."""
        return str(keyid.parse(self.key_id))

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 / SHA-256 over `data` (the scheme of every 券面AP signature, §3.2)."""
        return self.key.sign(bytes(data), padding.PKCS1v15(), hashes.SHA256())

    def issue_cvc(self, subject_key_id: bytes, public_key: rsa.RSAPublicKey) -> bytes:
        """The 568-byte CVC of EF 0004 (spec §3.2), in the card's own encoding.

        subject_key_id must be a §13.1 key id (mynaemu.card.keyid); KeyIdError (a ValueError)
        otherwise, as a client parsing the certificate would reject it.
        """
        keyid.parse(subject_key_id)
        return card_cvc.encode_cvc(issuer_key_id=self.key_id, subject_key_id=subject_key_id,
                                  subject_public_key=public_key, issuer_key=self.key)

    def verify_cvc(self, cvc: bytes) -> tuple[bytes, rsa.RSAPublicKey]:
        """Check a CVC's layout, issuer key id and signature; return (subject key id, key)."""
        cvc = bytes(cvc)
        if len(cvc) != CVC_LENGTH:
            raise ValueError(f"not a 568-byte card-verifiable certificate ({len(cvc)} bytes)")
        try:
            parsed = card_cvc.parse_cvc(cvc)
        except (tlv.TLVError, ValueError) as exc:
            raise ValueError(f"not a 7F21/5F4E card-verifiable certificate: {exc}") from None
        if parsed.issuer_key_id != self.key_id:
            raise ValueError("CVC was issued under another key id")
        if not card_cvc.verify_cvc(cvc, self.public_key):
            raise ValueError("CVC signature does not verify under this issuer")
        return parsed.subject_key_id, parsed.public_key


@dataclasses.dataclass(frozen=True)
class TestPKI:
    """The TEST hierarchy a back office issues under."""

    __test__ = False

    auth_ca: TestCA
    sign_ca: TestCA
    cvc_issuer: CvcIssuer

    def __post_init__(self):
        if self.auth_ca.kind != AUTH or self.sign_ca.kind != SIGN:
            raise ValueError("auth_ca must be an auth CA and sign_ca a sign CA")

    def ca(self, kind: str) -> TestCA:
        return {AUTH: self.auth_ca, SIGN: self.sign_ca}[profiles._kind(kind)]

    # --- serialisation (disk cache) -----------------------------------------------------
    def parts_json(self) -> dict:
        """The two CAs and the CVC issuer as JSON values (keys PEM): the body of to_json() and of
        the store's own PKI document (issuance/store/pki.py)."""
        def ca_doc(ca: TestCA) -> dict:
            return {"kind": ca.kind, "generation": ca.generation,
                    "key": private_key_pem(ca.key).decode("ascii"),
                    "certificate": ca.certificate_pem.decode("ascii")}

        return {"auth_ca": ca_doc(self.auth_ca), "sign_ca": ca_doc(self.sign_ca),
                "cvc_issuer": {"key": private_key_pem(self.cvc_issuer.key).decode("ascii"),
                               "key_id": self.cvc_issuer.key_id.hex()}}

    @classmethod
    def from_parts(cls, doc: dict) -> "TestPKI":
        """Rebuild from parts_json(); any inconsistency raises ValueError/TypeError/KeyError."""
        def ca(part: dict, kind: str) -> TestCA:
            if part["kind"] != kind:
                raise ValueError(f"expected a {kind} CA, got {part['kind']!r}")
            return TestCA(kind, load_private_key_pem(part["key"].encode("ascii")),
                          x509.load_pem_x509_certificate(part["certificate"].encode("ascii")),
                          part["generation"])

        cvc = doc["cvc_issuer"]
        return cls(ca(doc["auth_ca"], AUTH), ca(doc["sign_ca"], SIGN),
                   CvcIssuer(load_private_key_pem(cvc["key"].encode("ascii")), bytes.fromhex(cvc["key_id"])))

    def to_json(self) -> dict:
        return {"format": CACHE_FORMAT, "version": PKI_CACHE_VERSION, "seed": PROJECT_SEED,
                **self.parts_json()}

    @classmethod
    def from_json(cls, doc) -> "TestPKI":
        """Rebuild from to_json(); any inconsistency raises ValueError/TypeError/KeyError."""
        if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
            raise ValueError("not a mynaemu TEST PKI document")
        if doc.get("version") != PKI_CACHE_VERSION or doc.get("seed") != PROJECT_SEED:
            raise ValueError("TEST PKI document of another version or seed")
        return cls.from_parts(doc)


def build_default_test_pki() -> TestPKI:
    """Generate the default TEST PKI from PROJECT_SEED (no caching; about a second)."""
    def ca(kind: str) -> TestCA:
        rng = derive_rng(PROJECT_SEED, f"{kind}-ca/{DEFAULT_GENERATION}")
        return TestCA.create(kind, rng=rng, not_before=DEFAULT_NOT_BEFORE, years=DEFAULT_YEARS,
                             generation=DEFAULT_GENERATION)

    cvc = CvcIssuer.create(rng=derive_rng(PROJECT_SEED, f"cvc-issuer/{DEFAULT_GENERATION}"))
    return TestPKI(ca(AUTH), ca(SIGN), cvc)


def _source_fingerprint() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _SHAPING_MODULES:
        try:
            digest.update(name.encode() + b"\0" + (here / name).read_bytes())
        except OSError:  # e.g. run from a zip: fall back to the format version alone
            digest.update(name.encode() + b"\0unreadable")
    return digest.hexdigest()[:16]


def default_cache_file() -> Path:
    """user_cache_dir("mynaemu")/test-pki-v<format version>-<source hash>.json"""
    name = f"test-pki-v{PKI_CACHE_VERSION}-{_source_fingerprint()}.json"
    return Path(platformdirs.user_cache_dir("mynaemu")) / name


def load_or_build_test_pki(cache_file: Path | None) -> TestPKI:
    """The default TEST PKI from `cache_file` when it holds a valid one, else built and written.

    A missing, unreadable or inconsistent cache is rebuilt; failing to write the cache (e.g. a
    read-only home) only costs the next process a rebuild.
    """
    if cache_file is not None:
        try:
            return TestPKI.from_json(json.loads(Path(cache_file).read_text(encoding="utf-8")))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            log.info("ignoring TEST PKI cache %s: %s", cache_file, exc)
    pki = build_default_test_pki()
    if cache_file is not None:
        try:
            _write_atomic(Path(cache_file), json.dumps(pki.to_json(), indent=1).encode("utf-8"))
        except OSError as exc:
            log.info("cannot write TEST PKI cache %s: %s", cache_file, exc)
    return pki


def _write_atomic(path: Path, data: bytes) -> None:
    # concurrent processes never see a torn cache file
    from mynaemu.issuance.private_files import private_dir

    private_dir(path.parent, tighten=True)  # the cache folder is mynaemu's own
    write_file_atomic(path, data)


@functools.cache
def default_test_pki() -> TestPKI:
    """The project's fixed TEST PKI (deterministic; cached per process and on disk)."""
    return load_or_build_test_pki(default_cache_file())


def default_ca_pems() -> dict[str, bytes]:
    """{"auth_ca.pem": ..., "sign_ca.pem": ...}: the files kept in vectors/certs/."""
    pki = default_test_pki()
    return {"auth_ca.pem": pki.auth_ca.certificate_pem, "sign_ca.pem": pki.sign_ca.certificate_pem}


def write_default_vectors(directory) -> list[Path]:
    """Write default_ca_pems() into `directory` (used to refresh vectors/certs/)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, pem in default_ca_pems().items():
        (directory / name).write_bytes(pem)
        written.append(directory / name)
    return written


if __name__ == "__main__":  # python -m mynaemu.issuance.pki.ca DIR
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m mynaemu.issuance.pki.ca OUTPUT_DIR")
    for written_path in write_default_vectors(sys.argv[1]):
        print(written_path)
