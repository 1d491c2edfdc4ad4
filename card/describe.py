"""A human/JSON summary of a card image (for `mynaemu card info`): secrets hidden by default."""
from __future__ import annotations

from cryptography import x509

from .image import BinaryEF, CardImage, KeyEF, OpaqueEF, PinEF, RecordEF
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
        kinds = {"binary": 0, "record": 0, "pin": 0, "key": 0, "opaque": 0}
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
            elif isinstance(ef, OpaqueEF):
                kinds["opaque"] += 1
        apps.append(f"{app.name} {app.aid.hex().upper()} " +
                    ", ".join(f"{n} {k}" for k, n in kinds.items() if n))
    out["applications"] = apps
    out["pins"] = pins
    out["certificates"] = certs
    out["key_ids"] = key_id_lines(image)
    return out


def key_id_lines(image: CardImage) -> list[str]:
    """Every 16-byte key id on the card, printed as §13.1 `6000033/001` (hex when malformed)."""
    from .apps import kenhojo, kenkaku, mf   # the layouts that say where the ids are
    from .keyid import describe as kid
    from .tlv import TLVError

    found = []

    def add(where, fn):
        try:
            value = fn()
        except (KeyError, AttributeError, IndexError, ValueError, TLVError):
            return
        found.append(f"{where}: {kid(value)}")

    by_name = {app.name: app for app in image.applications}
    for name in ("kenhojo", "kenkaku"):
        if name in by_name:
            efs = by_name[name].efs
            add(f"{name} CVC 証明者鍵ID", lambda: kenhojo.parse_cvc(efs[0x0004].data).issuer_key_id)
            add(f"{name} CVC 被証明者鍵ID", lambda: kenhojo.parse_cvc(efs[0x0004].data).subject_key_id)
            if name == "kenhojo":
                add("kenhojo EF 0005 DF42", lambda: kenhojo.parse_ap_info(efs[0x0005].data)["key_id"])
            else:
                add("kenkaku EF 0003 DF32", lambda: kenkaku.parse_ap_info(efs[0x0003].data)["key_id"])
                add("kenkaku EF 0003 DF35", lambda: kenkaku.parse_ap_info(efs[0x0003].data)["blob_key_id"])
    for name in ("common", "juki"):
        if name in by_name and 0x0002 in by_name[name].efs:
            ef = by_name[name].efs[0x0002]
            add(f"{name} EF 0002", lambda: ef.records[0][-16:] if isinstance(ef, RecordEF) else ef.data)
    gd = image.get_data
    add("MF GET DATA 0042", lambda: gd[mf.ISSUER_IDENTIFICATION])
    add("MF GET DATA 00F7", lambda: gd[mf.INTERMEDIATE_KEY_ID])
    return found


def _cert_line(kind: str, der: bytes) -> str:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return f"{kind}: unparseable ({len(der)} bytes)"
    return (f"{kind}: serial {cert.serial_number:X}, {cert.subject.rfc4514_string()}, "
            f"{cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d}")
