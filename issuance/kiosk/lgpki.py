"""The TEST local-government PKI that signs the kiosk's documents (a stand-in for LGPKI).

Municipalities sign the certificates they issue as 市区町村長 (the mayor) with a certificate of the
local-government PKI (組織認証基盤, LGPKI). Nothing in the source documents describes that PKI, so
its shape here is a project decision, modelled on how LGPKI names its holders:

- one **TEST root CA per installation** (per store home): `CN=mynaemu TEST LGPKI Root CA`,
  RSA-2048, created at first use with random keys (never derived from anything in the source),
  the private key 0600 under `<home>/kiosk/lgpki/`, its certificate beside it. This root is
  what a relying party trusts (`mynaemu kiosk trust-root` prints it; docs/verifying-documents.md);
- one **signing certificate per municipality**, held by its mayor: subject
  `C=JP, O=TEST LGPKI, L=<municipality>, organizationIdentifier=LGJP-<5-digit code>,
  title=市区町村長, CN=TEST <municipality>長 <mayor>`, keyUsage digitalSignature +
  nonRepudiation, extendedKeyUsage documentSigning. The `organizationIdentifier` is what binds a
  signature to a municipality: a verifier refuses a document whose signer's code differs from
  the code the document names.

Every name says TEST; nothing here chains to a real root.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mynaemu.card.safefile import write_file_atomic

ROOT_NAME = "mynaemu TEST LGPKI Root CA"
ORGANIZATION = "TEST LGPKI"
ORG_ID_PREFIX = "LGJP-"
MAYOR_TITLE = "市区町村長"
ROOT_START = _dt.datetime(2015, 1, 1, tzinfo=_dt.timezone.utc)
ROOT_END = _dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=_dt.timezone.utc)
# id-kp-documentSigning (RFC 9336)
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
_CODE_RE = re.compile(r"[0-9]{5}")


class LgpkiError(Exception):
    """The TEST LGPKI files are missing, unreadable or inconsistent; the message names the file."""


def folder(home) -> Path:
    return Path(home) / "kiosk" / "lgpki"


def root_path(home) -> Path:
    """Where the TEST LGPKI root certificate (the relying party's trust anchor) is kept."""
    return folder(home) / "root.pem"


@dataclasses.dataclass(frozen=True)
class Signer:
    """A municipality's document signer: the mayor's key, certificate and the chain to the root."""

    code: str
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    root: x509.Certificate

    @property
    def key_id(self) -> str:
        """16 hex digits naming the signing certificate (SHA-256 of its DER)."""
        return certificate_id(self.certificate)


def certificate_id(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()[:16]


def municipality_code_of(certificate: x509.Certificate) -> str | None:
    """The 5-digit municipality code a TEST LGPKI signing certificate names, or None."""
    for attr in certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_IDENTIFIER):
        value = str(attr.value)
        if value.startswith(ORG_ID_PREFIX) and _CODE_RE.fullmatch(value[len(ORG_ID_PREFIX):]):
            return value[len(ORG_ID_PREFIX):]
    return None


def _private_dir(path: Path) -> None:
    from mynaemu.issuance.private_files import private_dir

    private_dir(path, tighten=True)  # missing parents (the home) 0700 too, whatever the umask


@contextlib.contextmanager
def _creation_lock(base: Path):
    """Serialise first-use creation across processes (the lock dies with its holder)."""
    fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write `path` whole with `mode`, whatever the umask: the project's one atomic writer
    (temp file, fsync, rename, fsync of the folder; never over a device, FIFO or directory)."""
    write_file_atomic(path, data, mode=mode)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_pair(key_path: Path, cert_path: Path):
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError as exc:
        raise LgpkiError(f"{exc.filename}: missing (the TEST LGPKI files are incomplete)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise LgpkiError(f"{key_path.parent}: unreadable TEST LGPKI file: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey) or cert.public_key() != key.public_key():
        raise LgpkiError(f"{cert_path}: does not certify the key in {key_path}")
    return key, cert


def _root_subject() -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, ROOT_NAME)])


def _make_root() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _root_subject()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(ROOT_START).not_valid_after(ROOT_END)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def load_or_create_root(home) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """The installation's TEST LGPKI root (key, certificate), made with random keys on first use."""
    base = folder(home)
    _private_dir(base.parent)
    _private_dir(base)
    key_path, cert_path = base / "root.key.pem", root_path(home)
    with _creation_lock(base):
        if not key_path.exists():
            key, cert = _make_root()
            _write_private(cert_path, _cert_pem(cert), 0o600)   # the trust anchor: public, but
            # everything in the home is 0600 (private_files.py); `kiosk verify-pdf` reads it as the owner
            _write_private(key_path, _key_pem(key), 0o600)
    return _load_pair(key_path, cert_path)


def municipality_subject(code: str, name: str, mayor: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        x509.NameAttribute(NameOID.LOCALITY_NAME, f"TEST {name}"),
        x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"{ORG_ID_PREFIX}{code}"),
        x509.NameAttribute(NameOID.TITLE, MAYOR_TITLE),
        x509.NameAttribute(NameOID.COMMON_NAME, f"TEST {name}長 {mayor}"),
    ])


def issue_signer_certificate(root_key, root_cert, public_key, *, code: str, name: str,
                             mayor: str) -> x509.Certificate:
    if not _CODE_RE.fullmatch(code or ""):
        raise ValueError(f"municipality code must be 5 digits, got {code!r}")
    ski = root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder().subject_name(municipality_subject(code, name, mayor))
            .issuer_name(root_cert.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(ROOT_START).not_valid_after(ROOT_END)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING]),
                           critical=False)   # NSS (pdfsig) checks signers for email-signing use
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(root_key, hashes.SHA256()))


def load_or_create_signer(home, code: str, *, name: str, mayor: str) -> Signer:
    """Municipality `code`'s TEST signer under `<home>/kiosk/lgpki/`, made on first use."""
    if not _CODE_RE.fullmatch(code or ""):
        raise ValueError(f"municipality code must be 5 digits, got {code!r}")
    root_key, root_cert = load_or_create_root(home)
    base = folder(home)
    key_path, cert_path = base / f"municipality-{code}.key.pem", base / f"municipality-{code}.pem"
    with _creation_lock(base):
        if not key_path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            cert = issue_signer_certificate(root_key, root_cert, key.public_key(), code=code,
                                            name=name, mayor=mayor)
            _write_private(cert_path, _cert_pem(cert), 0o600)
            _write_private(key_path, _key_pem(key), 0o600)
    key, cert = _load_pair(key_path, cert_path)
    if cert.issuer != root_cert.subject or municipality_code_of(cert) != code:
        raise LgpkiError(f"{cert_path}: not a TEST LGPKI certificate of municipality {code}")
    return Signer(code, key, cert, root_cert)


def trust_root(home) -> x509.Certificate | None:
    """The installation's TEST LGPKI root certificate, or None when none was made yet."""
    path = root_path(home)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LgpkiError(f"{path}: not a certificate: {exc}") from None


def load_trust_root(path) -> x509.Certificate:
    """A trust anchor from a PEM or DER file (for `verify-pdf --trust-root`)."""
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise LgpkiError(f"{path}: not a certificate: {exc}") from None
