"""A human/JSON summary of a card image (for `mynaemu card info`): secrets hidden by default."""
from __future__ import annotations

from cryptography import x509

from mynaemu.card.apps import kenhojo
from mynaemu.card.ids import CommonEF, JpkiEF, JukiEF, KenhojoEF, KenkakuEF
from mynaemu.card.image import BinaryEF, CardImage, KeyEF, OpaqueEF, PinEF, RecordEF
from mynaemu.card.redact import mask_number
from mynaemu.card.tlv import TLVError, decode_one

# Certificate EFs of the JPKI-AP (spec §3.1).
CERT_EFS = {JpkiEF.AUTH_CERT: "auth", JpkiEF.SIGN_CERT: "sign", JpkiEF.AUTH_CA: "auth CA",
            JpkiEF.SIGN_CA: "sign CA"}


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
    from mynaemu.card.apps import kenkaku, mf   # the layouts that say where the ids are
    from mynaemu.card.cvc import parse_cvc
    from mynaemu.card.keyid import describe as kid
    from mynaemu.card.tlv import TLVError

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
            cvc = KenhojoEF.CVC if name == "kenhojo" else KenkakuEF.CVC
            add(f"{name} CVC 証明者鍵ID", lambda: parse_cvc(efs[cvc].data).issuer_key_id)
            add(f"{name} CVC 被証明者鍵ID", lambda: parse_cvc(efs[cvc].data).subject_key_id)
            if name == "kenhojo":
                add("kenhojo EF 0005 DF42",
                    lambda: kenhojo.parse_ap_info(efs[KenhojoEF.AP_INFO].data)["key_id"])
            else:
                add("kenkaku EF 0003 DF32",
                    lambda: kenkaku.parse_ap_info(efs[KenkakuEF.AP_INFO].data)["key_id"])
                add("kenkaku EF 0003 DF35",
                    lambda: kenkaku.parse_ap_info(efs[KenkakuEF.AP_INFO].data)["blob_key_id"])
    for name, key_reference in (("common", CommonEF.KEY_REFERENCE), ("juki", JukiEF.KEY_REFERENCE)):
        if name in by_name and key_reference in by_name[name].efs:
            ef = by_name[name].efs[key_reference]
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


# -- structured (card info --json) --------------------------------------------------------------

JPKI_TOKEN_EF = JpkiEF.TOKEN     # JPKI-AP token "JPKIAPICCTOKEN2" (spec §3.1)


def describe_image_json(image: CardImage, *, reveal: bool = False) -> dict:
    """`card info --json`: every value typed (integers for counts, ISO dates, hex strings for
    AIDs, FIDs, ATR and serials). The 個人番号 is masked and birth date, address and PIN values
    are left out unless `reveal`."""
    meta = dict(image.meta)
    number = meta.get("individual_number")
    holder = {"name": meta.get("holder"),
              "individual_number": mask_number(number, reveal) if number else None}
    out = {"format": "mynaemu-card-info", "label": image.label, "persona": meta.get("persona"),
           "holder": holder, "individual_number": holder["individual_number"],
           "card_expires": meta.get("card_expires"), "created": meta.get("created"),
           "atr": {"profile": image.atr, "hex": image.atr_bytes.hex().upper()},
           "token": None, "applications": [], "certificates": [], "pins": []}
    for app in image.applications:
        counts = {"binary": 0, "record": 0, "pin": 0, "key": 0}
        for fid, ef in sorted(app.efs.items()):
            if isinstance(ef, BinaryEF):
                counts["binary"] += 1
                if app.name == "jpki" and fid in CERT_EFS:
                    out["certificates"].append(_cert_doc(CERT_EFS[fid], fid, ef.data))
                if app.name == "jpki" and fid == JPKI_TOKEN_EF:
                    out["token"] = ef.data[:32].rstrip(b" \x00").decode("ascii", "replace")   # READ BINARY 00 B0 00 00 20
                if app.name == "kenhojo" and fid == KenhojoEF.BASIC4 and reveal:
                    holder.update(_basic4(ef.data))
            elif isinstance(ef, RecordEF):
                counts["record"] += 1
            elif isinstance(ef, PinEF):
                counts["pin"] += 1
                pin = {"ap": app.name, "fid": f"{fid:04X}", "name": ef.label or None,
                       "tries_left": int(max(ef.remaining, 0)), "max_tries": int(ef.max_tries),
                       "blocked": bool(ef.blocked)}
                if reveal:
                    pin["value"] = ef.value.decode("ascii", "replace")
                out["pins"].append(pin)
            elif isinstance(ef, KeyEF):
                counts["key"] += 1
        out["applications"].append({"name": app.name, "aid": app.aid.hex().upper(), "efs": counts})
    if reveal and "secrets" in meta:
        out["secrets"] = meta["secrets"]
    return out


def _basic4(data: bytes) -> dict:
    """Birth date, sex and address from kenhojo EF 0002 (§3.2): DF23 住所, DF24 YYYYMMDD, DF25."""
    try:
        fields = {t.tag: t.value for t in decode_one(data).children()}
    except TLVError:
        return {}
    out = {}
    if kenhojo.T_ADDRESS in fields:
        out["address"] = fields[kenhojo.T_ADDRESS].decode("utf-8", "replace")
    birth = fields.get(kenhojo.T_BIRTH, b"")
    if len(birth) == 8 and birth.isdigit():
        out["birth"] = f"{birth[:4].decode()}-{birth[4:6].decode()}-{birth[6:].decode()}"
    if kenhojo.T_SEX in fields:
        out["sex"] = fields[kenhojo.T_SEX].decode("ascii", "replace")
    return out


def _cert_doc(kind: str, fid: int, der: bytes) -> dict:
    doc = {"kind": kind, "ef": f"{fid:04X}", "size": len(der)}
    try:
        # the EF may hold filler after the certificate ([U] §3.1): parse the DER object only
        cert = x509.load_der_x509_certificate(decode_one(der).raw)
    except (ValueError, TLVError):
        doc["error"] = "unparseable"
        return doc
    doc.update({"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                "serial": f"{cert.serial_number:X}",
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat()})
    return doc
