"""A human/JSON summary of a card image (for `mynaemu card info`): secrets hidden by default."""
from __future__ import annotations

from cryptography import x509

from .image import BinaryEF, CardImage, KeyEF, PinEF, RecordEF
from .redact import mask_number

# Certificate EFs of the JPKI-AP (spec §3.1).
CERT_EFS = {0x000A: "auth", 0x0001: "sign", 0x000B: "auth CA", 0x0002: "sign CA"}


def describe_image(image: CardImage, *, reveal: bool = False) -> dict:
    meta = dict(image.meta)
    out = {"label": image.label, "atr": image.atr}
    if "holder" in meta:
        out["holder"] = meta["holder"]
    if "individual_number" in meta:
        out["individual_number"] = mask_number(meta["individual_number"], reveal)
    for key in ("persona", "card_expires", "created"):
        if key in meta:
            out[key] = meta[key]
    if reveal and "secrets" in meta:
        out["secrets"] = meta["secrets"]
    apps, pins, certs = [], [], []
    for app in image.applications:
        kinds = {"binary": 0, "record": 0, "pin": 0, "key": 0}
        for fid, ef in sorted(app.efs.items()):
            if isinstance(ef, BinaryEF):
                kinds["binary"] += 1
                if app.name == "jpki" and fid in CERT_EFS:
                    certs.append(_cert_line(CERT_EFS[fid], ef.data))
            elif isinstance(ef, RecordEF):
                kinds["record"] += 1
            elif isinstance(ef, PinEF):
                kinds["pin"] += 1
                state = "BLOCKED" if ef.blocked else f"{ef.remaining}/{ef.max_tries} tries"
                value = f" value={ef.value.decode('ascii')}" if reveal else ""
                pins.append(f"{app.name}/{fid:04X} {ef.label or ''} {state}{value}".replace("  ", " "))
            elif isinstance(ef, KeyEF):
                kinds["key"] += 1
        apps.append(f"{app.name} {app.aid.hex().upper()} " +
                    ", ".join(f"{n} {k}" for k, n in kinds.items() if n))
    out["applications"] = apps
    out["pins"] = pins
    out["certificates"] = certs
    return out


def _cert_line(kind: str, der: bytes) -> str:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return f"{kind}: unparseable ({len(der)} bytes)"
    return (f"{kind}: serial {cert.serial_number:X}, {cert.subject.rfc4514_string()}, "
            f"{cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d}")
