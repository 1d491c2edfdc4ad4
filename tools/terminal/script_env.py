"""What a card means to a card script: its variables and its public keys, from its content.

The variables of vectors/transcripts/README.md (PINs, 照合番号, birth keys, certificate and EF
lengths) are computed from the card image, never typed into a script: `persona_env` for a
persona built here, `image_env` for any image (its `meta.secrets` hold the PINs the back office
set). `persona_keys` gives the public keys a `pkcs1=` check verifies a signature with (§5.1).
The script targets (tools/terminal/script_targets.py) and the session recorder
(tools/terminal/record.py) both read a card through this module.
"""
from __future__ import annotations

import datetime as _dt
import types

from cryptography import x509

from mynaemu.card import tlv
from mynaemu.card.aid import AID
from mynaemu.card.apps import kenhojo, kenkaku
from mynaemu.card.ids import CommonEF, JpkiEF, KenhojoEF, KenkakuEF
from mynaemu.issuance.identity import era_yymmdd
from mynaemu.tools.terminal import script_sm
from mynaemu.tools.terminal.parse import object_len, parse_basic4, parse_card_info
from mynaemu.tools.terminal.script import TranscriptError


def ef_data(image, app: str, fid: int) -> bytes:
    for application in image.applications:
        if application.aid == AID[app.upper()]:
            return application.efs[fid].data
    raise KeyError(app)


def _tlv_len(n: int) -> int:
    # DER length octets; the spec's example (FF 20 65, DF22 0F …) uses the short form (§3.2).
    return 1 if n < 0x80 else 2 if n < 0x100 else 3


def basic4_len(identity) -> int:
    """kenhojo EF 0002 object length from the identity by the §3.2 layout."""
    name = len(identity.name.encode("utf-8"))
    address = len(identity.address.encode("utf-8"))
    content = (2 + 1 + 8) + (2 + _tlv_len(name) + name) + (2 + _tlv_len(address) + address) \
        + (2 + 1 + 8) + (2 + 1 + 1)
    return 2 + _tlv_len(content) + content


def _wrong(pin: str) -> str:
    last = pin[-1]
    if last.isdigit():
        repl = str((int(last) + 1) % 10)
    elif last.isalpha():
        repl = "A" if last.upper() == "Z" else chr(ord(last.upper()) + 1)
    else:
        repl = "0"
    return pin[:-1] + repl


def persona_env(image, info) -> dict:
    ident = info.identity
    env = {
        "MY_NUMBER": ident.individual_number,
        "SHOGO_B": info.shogo_b,
        "BIRTH6": era_yymmdd(ident.birth),
        "BIRTH8": f"{ident.birth:%Y%m%d}",
        "SEX": ident.sex,
        "NAME": ident.name,
        "ADDRESS": ident.address,
        "MUNICIPALITY": ident.municipality_code,
        "CARD_EXPIRY8": f"{info.card_expiry:%Y%m%d}",
        "SECURITY_CODE": info.security_code,
        "BASIC4_LEN": basic4_len(ident),
    }
    for key, var in (("auth", "AUTH_PIN"), ("sign", "SIGN_PIN"), ("kenhojo", "KENHOJO_PIN"),
                     ("juki", "JUKI_PIN")):
        if info.pins.get(key):
            env[var] = info.pins[key]
            env["WRONG_" + var] = _wrong(info.pins[key])
    for var, fid in (("AUTH_CERT", JpkiEF.AUTH_CERT), ("SIGN_CERT", JpkiEF.SIGN_CERT),
                     ("AUTH_CA", JpkiEF.AUTH_CA), ("SIGN_CA", JpkiEF.SIGN_CA)):
        try:
            data = ef_data(image, "jpki", fid)
        except (KeyError, AttributeError):
            continue
        env[var + "_EF"] = len(data)
        if data[:1] == b"\x30":
            env[var + "_LEN"] = object_len(data)
    try:
        env["BASIC4_EF"] = len(ef_data(image, "kenhojo", KenhojoEF.BASIC4))
        env["KENKAKU_FACE_LEN"] = object_len(ef_data(image, "kenkaku", KenkakuEF.FACE))
    except (KeyError, AttributeError):
        pass
    try:
        env.update(script_sm.env(ef_data(image, "kenhojo", KenhojoEF.SESSION_KEY)))   # §13.2 key delivery
    except (KeyError, AttributeError, ValueError):
        pass
    return env


def persona_keys(image) -> dict:
    keys = {}
    for kind, fid in (("auth", JpkiEF.AUTH_CERT), ("sign", JpkiEF.SIGN_CERT)):
        try:
            keys[kind] = x509.load_der_x509_certificate(
                ef_data(image, "jpki", fid)[:object_len(ef_data(image, "jpki", fid))]).public_key()
        except (KeyError, ValueError):
            pass
    # The AP keys as the card writes them (90 <e> 91 <n>, card/tlv.py): kenhojo EF 0007 DF51
    # (§3.2), kenkaku EF 0002 DF24 (§3.3).
    for kind, fid, tag in (("kenhojo", KenhojoEF.AP_PUBLIC_KEY, kenhojo.T_SIGNED_KEY_KEY),
                           ("kenkaku", KenkakuEF.FACE, kenkaku.T_CARD_KEY)):
        try:
            value = tlv.find(tlv.decode_one(ef_data(image, kind, fid)).children(), tag).value
            keys[kind] = tlv.decode_rsa_public_key(value)
        except (KeyError, AttributeError, ValueError):
            pass
    return keys




# -- card images without a PersonaInfo ------------------------------------------------------

def info_from_image(image):
    """The PersonaInfo-shaped facts of any card image: identity from kenhojo EF 0002/0001 (§3.2),
    municipality and expiry from the card-info record (§3.4), PINs and 照合番号B from meta.secrets."""
    secrets = dict(image.meta.get("secrets") or {})
    try:
        basic4 = parse_basic4(ef_data(image, "kenhojo", KenhojoEF.BASIC4))
    except (KeyError, AttributeError, ValueError) as exc:
        raise TranscriptError(f"the card image has no readable 基本4情報 (kenhojo EF 0002): {exc}") from None
    number = secrets.get("collation_a") or image.meta.get("individual_number") or ""
    municipality, expiry = "", None
    for app in image.applications:
        card_info = app.efs.get(CommonEF.CARD_INFO) if app.aid == AID.COMMON else None
        if getattr(card_info, "records", None):
            try:
                record = parse_card_info(card_info.records[0])
                municipality, expiry = record["municipality_code"], record["expiry"]
            except ValueError:
                pass
    if expiry is None and image.meta.get("card_expires"):
        expiry = _dt.date.fromisoformat(image.meta["card_expires"])
    identity = types.SimpleNamespace(name=basic4["name"], address=basic4["address"], birth=basic4["birth"],
                                     sex=basic4["sex"], individual_number=number,
                                     municipality_code=municipality)
    return types.SimpleNamespace(identity=identity, pins=dict(secrets.get("pins") or {}),
                                 shogo_b=secrets.get("collation_b", ""),
                                 security_code=secrets.get("security_code", ""),
                                 card_expiry=expiry or _dt.date(1, 1, 1))


def image_env(image) -> dict:
    """persona_env for any image (PersonaInfo when the image came from build_persona)."""
    return persona_env(image, info_from_image(image))
