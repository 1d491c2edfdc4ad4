"""PAdES signatures on the kiosk's PDFs, through pyHanko: sign with a TEST LGPKI signer, validate.

Signing: one signature field, `/SubFilter /ETSI.CAdES.detached` (PAdES baseline B-B), SHA-256,
RSA PKCS#1 v1.5, the signer's certificate and the root embedded in the CMS, no timestamp (a TEST
installation has no TSA), added as an incremental update to the rendered PDF.

Validation (what `mynaemu kiosk verify-pdf` and the kiosk run): exactly one signature; the
signed bytes intact and the CMS signature valid; the signer chains to one of the given trust
roots (no fetching: TEST certificates carry no CRL or OCSP pointers, so revocation is checked
softly); the signature covers the **entire file** (nothing appended after signing, not even an
incremental update that pyHanko would judge harmless). Anything else is a PadesError saying
which check failed.
"""
from __future__ import annotations

import asyncio
import dataclasses
import io
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

with warnings.catch_warnings():  # pyHanko imports DSA types, which cryptography deprecates
    warnings.simplefilter("ignore")
    from asn1crypto import cms as asn1_cms
    from asn1crypto import parser as asn1_parser
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign import fields, signers
    from pyhanko.sign.general import SigningError
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext
    from pyhanko_certvalidator.registry import SimpleCertificateStore

FIELD_NAME = "Signature1"
SIGNATURE_BYTES_RESERVED = 16 * 1024   # the CMS with two RSA-2048 certificates is about 3.5 KB


class PadesError(Exception):
    """A PDF's PAdES signature is missing, broken or not trusted; the message says which check."""


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


class _MayorSigner(signers.Signer):
    """A pyHanko signer over an already-loaded RSA key (SimpleSigner re-parses the PKCS#8 key,
    with its full RSA check, for every signature: 55 ms each, twice per document)."""

    def __init__(self, key: rsa.RSAPrivateKey, cert: x509.Certificate, chain):
        self._key = key
        self._size = key.key_size // 8
        super().__init__(signing_cert=_asn1_cert(cert),
                         cert_registry=SimpleCertificateStore.from_certs([_asn1_cert(c) for c in chain]),
                         signature_mechanism=None, prefer_pss=False, embed_roots=True)

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run=False) -> bytes:
        if digest_algorithm != "sha256":
            raise SigningError(f"only SHA-256 is used here, not {digest_algorithm}")
        if dry_run:
            return bytes(self._size)
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())


@dataclasses.dataclass(frozen=True)
class Validated:
    """The outcome of a successful validation: the signer's certificate and when it says it signed."""

    signer: x509.Certificate
    signing_time: object


def sign(pdf: bytes, *, key: rsa.RSAPrivateKey, certificate: x509.Certificate, chain=(),
         reason: str, location: str, name: str) -> bytes:
    """`pdf` with a PAdES signature by `certificate`'s holder appended as an incremental update."""
    signer = _MayorSigner(key, certificate, chain)
    meta = signers.PdfSignatureMetadata(field_name=FIELD_NAME, md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES,
                                        reason=reason, location=location, name=name)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    pdf_signer = signers.PdfSigner(meta, signer=signer)
    out = asyncio.run(pdf_signer.async_sign_pdf(writer, bytes_reserved=SIGNATURE_BYTES_RESERVED))
    return out.getvalue()


def _check_cms_strictly(sig) -> None:
    """What CMS leaves unsigned must still be exactly what this project writes.

    Readers ignore bytes after the CMS in /Contents (its reserved room), tolerate a changed
    outer tag or a SignedData version, and take the digest from the SignerInfo whatever the
    digestAlgorithms set says; none of that is covered by the signature value. So: the CMS is
    one canonical DER object followed by zero bytes only, a ContentInfo of signedData, version 1,
    digestAlgorithms exactly {SHA-256}, one SignerInfo using SHA-256 (a changed byte anywhere in
    the signature dictionary's /Contents fails either here or in the signature check)."""
    try:
        raw = bytes(sig.sig_object["/Contents"])
        _class, _method, _tag, header, body, _trailer = asn1_parser.parse(raw)
        der = raw[:len(header) + len(body)]
        info = asn1_cms.ContentInfo.load(der, strict=True)
        canonical = info.dump(force=True)
        signed = info["content"]
        digests = [d["algorithm"].native for d in signed["digest_algorithms"]]
        signer_infos = list(signed["signer_infos"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PadesError(f"the signature's /Contents is not one well-formed CMS: {exc}"[:300]) from None
    if raw[len(der):].strip(b"\0"):
        raise PadesError("the signature's /Contents carries bytes after the CMS (its padding was changed)")
    if canonical != der:
        raise PadesError("the signature's CMS is not in canonical DER")
    if info["content_type"].native != "signed_data" or signed["version"].native != "v1":
        raise PadesError("the signature's CMS is not a version-1 SignedData")
    if digests != ["sha256"] or len(signer_infos) != 1 \
            or signer_infos[0]["digest_algorithm"]["algorithm"].native != "sha256":
        raise PadesError("the signature's CMS must use SHA-256 alone, with one signer")


def validate(pdf: bytes, trust_roots) -> Validated:
    """Check `pdf`'s one PAdES signature against `trust_roots` (cryptography certificates)."""
    roots = [_asn1_cert(r) for r in trust_roots]
    if not roots:
        raise PadesError("no trust root to check the signer against")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfFileReader(io.BytesIO(bytes(pdf)), strict=False)
            sigs = reader.embedded_signatures
    except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError, OSError,
            RecursionError) as exc:
        raise PadesError(f"not a readable PDF: {type(exc).__name__}: {exc}"[:300]) from None
    if len(sigs) != 1:
        raise PadesError(f"expected exactly one signature, found {len(sigs)}")
    _check_cms_strictly(sigs[0])
    context = ValidationContext(trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status = validate_pdf_signature(sigs[0], context)
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds on hostile input
        raise PadesError(f"the signature cannot be validated: {type(exc).__name__}: {exc}"[:300]) from None
    if not status.intact:
        raise PadesError("the signed bytes were changed after signing (digest mismatch)")
    if not status.valid:
        raise PadesError("the signature value does not verify with the signer's certificate")
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        raise PadesError("the signature does not cover the whole file: something was appended after signing")
    if not status.trusted:
        raise PadesError("the signer does not chain to a trusted TEST LGPKI root")
    signer = x509.load_der_x509_certificate(status.signing_cert.dump())
    return Validated(signer, status.signer_reported_dt)
