"""Where a card script's card and variables come from: a persona, a card image, a PC/SC reader.

The variables of vectors/transcripts/README.md (PINs, 照合番号, birth keys, certificate and EF
lengths) are computed from the card's content, never typed into a script, so one script runs
against any card: a persona built on the spot, an image file (its `meta.secrets` hold the PINs
the back office set), or a card in a reader (there the PINs come from `--set NAME=VALUE`, and
the lengths and the authentication key are read from the card's free EFs, spec §3.1).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import functools
import types
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.issuance.identity import era_yymmdd
from mynaemu.tools.terminal.client import AIDS, InProcessConnection, ber_header, parse_basic4, parse_card_info
from mynaemu.tools.terminal import script_sm
from mynaemu.tools.terminal.script import TranscriptError, Transcript, run_script


def ef_data(image, app: str, fid: int) -> bytes:
    for application in image.applications:
        if application.aid == AIDS[app]:
            return application.efs[fid].data
    raise KeyError(app)


def object_len(data: bytes) -> int:
    _, hlen, vlen = ber_header(data)
    return hlen + vlen


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
    for var, fid in (("AUTH_CERT", 0x000A), ("SIGN_CERT", 0x0001), ("AUTH_CA", 0x000B),
                     ("SIGN_CA", 0x0002)):
        try:
            data = ef_data(image, "jpki", fid)
        except (KeyError, AttributeError):
            continue
        env[var + "_EF"] = len(data)
        if data[:1] == b"\x30":
            env[var + "_LEN"] = object_len(data)
    try:
        env["BASIC4_EF"] = len(ef_data(image, "kenhojo", 0x0002))
        env["KENKAKU_FACE_LEN"] = object_len(ef_data(image, "kenkaku", 0x0002))
    except (KeyError, AttributeError):
        pass
    try:
        env.update(script_sm.env(ef_data(image, "kenhojo", 0x0006)))   # §13.2 key delivery blocks
    except (KeyError, AttributeError, ValueError):
        pass
    return env


def _rsa_from_90_91(value: bytes) -> rsa.RSAPublicKey:
    """An RSA key written as 90 <e> 91 <n> TLVs (§3.2 CVC body, DF51, DF24)."""
    parts, pos = {}, 0
    while pos < len(value):
        tag, hlen, vlen = ber_header(value[pos:])
        parts[tag] = value[pos + hlen:pos + hlen + vlen]
        pos += hlen + vlen
    return rsa.RSAPublicNumbers(int.from_bytes(parts[0x90], "big"),
                                int.from_bytes(parts[0x91], "big")).public_key()


def _child(data: bytes, want: int) -> bytes:
    """The value of child TLV `want` inside the constructed object at the start of `data`."""
    _, hlen, vlen = ber_header(data)
    pos, end = hlen, hlen + vlen
    while pos < end:
        tag, h, v = ber_header(data[pos:end])
        if tag == want:
            return data[pos + h:pos + h + v]
        pos += h + v
    raise KeyError(f"{want:X}")


def persona_keys(image) -> dict:
    keys = {}
    for kind, fid in (("auth", 0x000A), ("sign", 0x0001)):
        try:
            keys[kind] = x509.load_der_x509_certificate(
                ef_data(image, "jpki", fid)[:object_len(ef_data(image, "jpki", fid))]).public_key()
        except (KeyError, ValueError):
            pass
    for kind, app, fid, tag in (("kenhojo", "kenhojo", 0x0007, 0xDF51), ("kenkaku", "kenkaku", 0x0002, 0xDF24)):
        try:
            keys[kind] = _rsa_from_90_91(_child(ef_data(image, app, fid), tag))
        except (KeyError, AttributeError, ValueError):
            pass
    return keys




# -- card images without a PersonaInfo ------------------------------------------------------

def info_from_image(image):
    """The PersonaInfo-shaped facts of any card image: identity from kenhojo EF 0002/0001 (§3.2),
    municipality and expiry from the card-info record (§3.4), PINs and 照合番号B from meta.secrets."""
    secrets = dict(image.meta.get("secrets") or {})
    try:
        basic4 = parse_basic4(ef_data(image, "kenhojo", 0x0002))
    except (KeyError, AttributeError, ValueError) as exc:
        raise TranscriptError(f"the card image has no readable 基本4情報 (kenhojo EF 0002): {exc}") from None
    number = secrets.get("collation_a") or image.meta.get("individual_number") or ""
    municipality, expiry = "", None
    for app in image.applications:
        if app.aid == AIDS["common"] and 0x0001 in app.efs and getattr(app.efs[0x0001], "records", None):
            try:
                record = parse_card_info(app.efs[0x0001].records[0])
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


@functools.lru_cache(maxsize=None)
def _persona(name: str, seed: int = 0):
    from mynaemu.issuance.personas import build_persona
    return build_persona(name, seed=seed)


def persona_card(name: str, seed: int = 0):
    """(image, info) of a persona, built once per process; the image is a fresh deep copy."""
    from mynaemu.issuance.personas import PERSONAS

    if name not in PERSONAS:
        raise TranscriptError(f"unknown persona {name!r}; choose from: {', '.join(PERSONAS)}")
    image, info = _persona(name, seed)
    return copy.deepcopy(image), info


# -- targets --------------------------------------------------------------------------------

@dataclasses.dataclass
class Target:
    """A card to run scripts against: `connect()` gives a fresh connection for each script."""

    describe: str
    connect: object               # () -> connection with transmit/reset/close
    env: dict
    keys: dict


def persona_target(name: str, seed: int = 0) -> Target:
    image, info = persona_card(name, seed)
    env, keys = persona_env(image, info), persona_keys(image)

    def connect():
        from mynaemu.card.core import Card
        return InProcessConnection(Card(copy.deepcopy(image)))
    return Target(f"persona {name}", connect, env, keys)


def image_target(path) -> Target:
    """A card image file, run in memory: every script starts from the file as it is, which is
    never written (a script that blocks a PIN does not block it in the file)."""
    from mynaemu.card.core import Card
    from mynaemu.card.image import CardImage

    image = CardImage.load(Path(path))
    env, keys = image_env(image), persona_keys(image)

    def connect():
        return InProcessConnection(Card(copy.deepcopy(image)))
    return Target(str(path), connect, env, keys)


def _read_free_ef(conn, aid: bytes, fid: int) -> bytes | None:
    """Read a whole EF that needs no PIN (JPKI certificates, §3.1); None if the card refuses."""
    def ok(resp):
        return resp[-2:] == b"\x90\x00"
    if not ok(conn.transmit(b"\x00\xA4\x04\x0C" + bytes((len(aid),)) + aid)):
        return None
    if not ok(conn.transmit(b"\x00\xA4\x02\x0C\x02" + fid.to_bytes(2, "big"))):
        return None
    head = conn.transmit(b"\x00\xB0\x00\x00\x07")
    if not ok(head) or len(head) < 9:
        return None
    try:
        _, hlen, vlen = ber_header(head[:-2])
    except ValueError:
        return None
    total, data = hlen + vlen, b""
    while len(data) < total:
        n = min(256, total - len(data))
        resp = conn.transmit(b"\x00\xB0" + len(data).to_bytes(2, "big") + bytes((n % 256,)))
        if not ok(resp) or not resp[:-2]:
            return None
        data += resp[:-2]
    return data[:total]


def reader_target(reader: str | None, sets: dict) -> Target:
    """A card in a PC/SC reader (a real card too). The free certificates give AUTH_CERT_LEN,
    AUTH_CA_LEN, SIGN_CA_LEN and the `pkcs1=auth` key; secrets come only from `sets`."""
    from mynaemu.tools.terminal.client import PcscConnection

    env, keys = {}, {}
    probe = PcscConnection(reader)
    name = probe.reader
    try:
        for var, fid in (("AUTH_CERT", 0x000A), ("AUTH_CA", 0x000B), ("SIGN_CA", 0x0002)):
            data = _read_free_ef(probe, AIDS["jpki"], fid)
            if data:
                env[var + "_LEN"] = len(data)
                if var == "AUTH_CERT":
                    try:
                        keys["auth"] = x509.load_der_x509_certificate(data).public_key()
                    except ValueError:
                        pass
    finally:
        probe.close()
    for key in list(sets):
        if key.endswith("_PIN") and not key.startswith("WRONG_"):
            env.setdefault("WRONG_" + key, _wrong(sets[key]))
    env.update(sets)
    return Target(f"reader {name}", lambda: _fresh_pcsc(name), env, keys)


def _fresh_pcsc(name):
    from mynaemu.tools.terminal.client import PcscConnection
    conn = PcscConnection(name)
    conn.reset(warm=False)          # every script starts from a power-up, as on a fresh persona card
    return conn


def run_on(target: Target, transcript: Transcript, on_exchange=None, sets: dict | None = None) -> int:
    conn = target.connect()
    try:
        return run_script(transcript, conn, {**target.env, **(sets or {})}, target.keys, on_exchange)
    finally:
        conn.close()


def replay(transcript: Transcript, image, info) -> int:
    """Run a transcript against a fresh in-process card of `image`; the conformance tests' entry."""
    from mynaemu.card.core import Card

    conn = InProcessConnection(Card(copy.deepcopy(image)))
    try:
        return run_script(transcript, conn, persona_env(image, info), persona_keys(image))
    finally:
        conn.close()
