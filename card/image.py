"""The card image: one versioned JSON file per card holding its personalisation and mutable state.

Format `mynaemu-card-image`, version 1 (documented in docs/card-image.md):

    {"format": "mynaemu-card-image", "version": 1,
     "label": "adult", "atr": "contact" | "<hex>",
     "options": {...CardOptions...},
     "meta": {...non-secret description: persona, holder name, created...},
     "get_data": {"0042": "<hex>", ...},            # MF-level GET DATA objects (spec §3.5)
     "applications": [
        {"name": "jpki", "aid": "<hex>", "efs": [
            {"fid": "000A", "type": "binary", "read": "free", "data": "<base64>"},
            {"fid": "0001", "type": "record", "read": ["001C"], "records": ["<base64>", ...]},
            {"fid": "0018", "type": "pin", "value": "1234", "max_tries": 3, "remaining": 3,
             "pattern": "[0-9]{4}", "change": "iso"},
            {"fid": "0017", "type": "key", "use": ["0018"], "ops": ["sign"], "default": false,
             "key": "-----BEGIN PRIVATE KEY-----..."}],
         "sm_key": "-----BEGIN PRIVATE KEY-----..."}]}   # optional, see below

`sm_key` (optional, kenhojo only; an additive field, so the version stays 1 and images made
before it still load): the private half of the session-key encryption key whose
public half is EF 0006 (spec §13.2). It is no EF: no APDU selects or reads it; SET SESSION
KEY decrypts with it. An image without it answers SET SESSION KEY with 6985; Card.from_file
(every door on a file) adds one once (card/sm.py ensure_key: a new EF 0006 key pair).

`{"fid": "001C", "type": "opaque"}` is an EF that exists though its use is unknown (§13.3):
it selects, and READ BINARY/RECORD answer options.unknown_ef_sw.

Access rules (`read` of data EFs, `use` of keys): "free", "never", or a list of PIN FIDs of
the same application, any one of which must be verified (spec §3, §4.3).

The mutable state is the PIN EFs' `value` and `remaining`. Saving is atomic (temp file,
fsync, rename, fsync of the folder), so a kill -9 leaves either the old or the new image,
never a torn one. A broken image raises CardImageError with a one-line message naming the
file, and the file is left untouched.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Union

FORMAT = "mynaemu-card-image"
VERSION = 1

# spec §1.2, §13.3: the ATR profiles (bytes, sources and TCK check in card/atr.py,
# docs/atr-profiles.md); an image names one, or gives its own hex.
from .atr import ATR_PROFILES  # noqa: E402

FREE = "free"
NEVER = "never"
Access = Union[str, tuple]  # FREE, NEVER, or a tuple of PIN FIDs (ints), any one suffices


UNKNOWN_EF_SWS = ("6981", "6982", "6985", "6986")


class CardImageError(Exception):
    """A card image that cannot be read or is not valid; the message is one line."""


@dataclasses.dataclass
class CardOptions:
    """Behaviour the sources leave open ([U] in the spec): one switch each."""

    # §4.5: re-selecting the current DF keeps its security status (default, keeps PYJPKI
    # working); False makes it clear, as OpenSC's logout assumes.
    reselect_keeps_status: bool = True
    # §2.2: SELECT by a DF-name prefix picks the first DF (in card order) whose AID starts
    # with it, as JICSAP allows; False refuses partial names with 6A82.
    prefix_select: bool = True
    # §2.2: SELECT with P2=00/04 and Le returns a minimal FCI (6F/62 with tag 84 = AID);
    # False answers 9000 without data.
    select_fci: bool = True
    # §3.5: GET DATA answered only at MF level (False) or also with an application selected.
    get_data_in_application: bool = False
    # §4.2: a PIN of the wrong length/charset counts as a wrong PIN ("count", a byte-comparing
    # card), or is refused with 6A80 without touching the counter ("reject").
    bad_pin_format: str = "count"
    # §13.3: EFs that exist though their use is unknown (type "opaque") select with 9000 and
    # refuse READ BINARY / READ RECORD with this status word. Default 6981, as the MF's EF
    # 001E that also selects but cannot be read (§2.2 [S]); 6982/6985/6986 are the alternatives.
    unknown_ef_sw: str = "6981"

    def __post_init__(self):
        if self.bad_pin_format not in ("count", "reject"):
            raise ValueError("bad_pin_format must be 'count' or 'reject'")
        if self.unknown_ef_sw not in UNKNOWN_EF_SWS:
            raise ValueError(f"unknown_ef_sw must be one of {', '.join(UNKNOWN_EF_SWS)}")


@dataclasses.dataclass
class BinaryEF:
    fid: int
    data: bytes
    read: Access = FREE
    label: str = ""


@dataclasses.dataclass
class RecordEF:
    fid: int
    records: list
    read: Access = FREE
    label: str = ""


@dataclasses.dataclass
class PinEF:
    fid: int
    value: bytes
    max_tries: int
    remaining: int
    pattern: str  # regular expression (fullmatch) over the ASCII PIN
    change: str = "iso"  # "iso" (00 24 01), "jicsap" (80 32 00), "none"
    label: str = ""

    @property
    def blocked(self) -> bool:
        return self.remaining <= 0

    def well_formed(self, candidate: bytes) -> bool:
        try:
            text = candidate.decode("ascii")
        except UnicodeDecodeError:
            return False
        return re.fullmatch(self.pattern, text) is not None


@dataclasses.dataclass
class KeyEF:
    fid: int
    key_pem: bytes  # PKCS#8 PEM; never leaves the card through any APDU
    use: Access
    ops: tuple = ("sign",)  # "sign" (80 2A), "internal_auth" (00 88)
    default: bool = False  # the AP's default key, used by 80 2A with P2=00
    label: str = ""


@dataclasses.dataclass
class OpaqueEF:
    """An EF that exists though its use is unknown (§13.3): SELECT 9000, no content access."""
    fid: int
    label: str = ""


EF = Union[BinaryEF, RecordEF, PinEF, KeyEF, OpaqueEF]


@dataclasses.dataclass
class Application:
    name: str
    aid: bytes
    efs: dict  # fid -> EF
    # §13.2: private half of the session-key encryption key (EF 0006), PKCS#8 PEM; no EF.
    sm_key_pem: bytes | None = None

    def add(self, ef) -> None:
        if ef.fid in self.efs:
            raise ValueError(f"{self.name}: duplicate EF {ef.fid:04X}")
        self.efs[ef.fid] = ef


@dataclasses.dataclass
class CardImage:
    applications: list
    label: str = ""
    atr: str = "contact"
    options: CardOptions = dataclasses.field(default_factory=CardOptions)
    get_data: dict = dataclasses.field(default_factory=dict)  # P1P2 (int) -> bytes
    meta: dict = dataclasses.field(default_factory=dict)

    def application(self, name: str) -> Application:
        for app in self.applications:
            if app.name == name:
                return app
        raise KeyError(name)

    def pin(self, app_name: str, fid: int) -> PinEF:
        ef = self.application(app_name).efs[fid]
        if not isinstance(ef, PinEF):
            raise KeyError(f"{app_name}/{fid:04X} is not a PIN")
        return ef

    @property
    def atr_bytes(self) -> bytes:
        return atr_bytes(self.atr)

    # -- JSON -------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "label": self.label,
            "atr": self.atr,
            "options": dataclasses.asdict(self.options),
            "meta": self.meta,
            "get_data": {f"{k:04X}": v.hex().upper() for k, v in sorted(self.get_data.items())},
            "applications": [_app_to_json(a) for a in self.applications],
        }

    @classmethod
    def from_json(cls, doc) -> "CardImage":
        if not isinstance(doc, dict):
            raise CardImageError("not a JSON object")
        if doc.get("format") != FORMAT:
            raise CardImageError(f"not a {FORMAT} file (format={doc.get('format')!r})")
        if doc.get("version") != VERSION:
            raise CardImageError(f"unsupported version {doc.get('version')!r} (this build reads {VERSION})")
        try:
            options = CardOptions(**doc.get("options", {}))
            image = cls(
                applications=[_app_from_json(a) for a in _need(doc, "applications", list)],
                label=str(doc.get("label", "")),
                atr=str(doc.get("atr", "contact")),
                options=options,
                get_data={_fid(k): _hex(v) for k, v in doc.get("get_data", {}).items()},
                meta=dict(doc.get("meta", {})),
            )
            atr_bytes(image.atr)
        except CardImageError:
            raise
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise CardImageError(f"malformed: {type(exc).__name__}: {exc}") from None
        names = [a.name for a in image.applications]
        if len(set(names)) != len(names):
            raise CardImageError("duplicate application names")
        return image

    # -- files ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path) -> "CardImage":
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CardImageError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CardImageError(f"{path}: not a card image (truncated or corrupt JSON: {exc})") from None
        try:
            return cls.from_json(doc)
        except CardImageError as exc:
            raise CardImageError(f"{path}: {exc}") from None

    def save(self, path) -> None:
        """Write atomically: temp file in the same folder, fsync, rename, fsync the folder."""
        save_json_atomic(path, self.to_json())


def save_json_atomic(path, doc) -> None:
    # A card image has one writer (its door), so a fixed temp name is safe, and a writer
    # killed mid-save leaves at most one stale temp file, which the next save overwrites.
    write_file_atomic(path, json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8"),
                      single_writer=True)


def write_file_atomic(path, data: bytes, *, single_writer: bool = False) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder: old or new, never torn.

    single_writer: use the fixed temp name `.NAME.tmp` (no pile-up after kills); otherwise a
    unique temp name, so concurrent writers of the same file cannot interleave.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if single_writer:
        tmp = str(folder / f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atr_bytes(atr: str) -> bytes:
    if atr in ATR_PROFILES:
        return ATR_PROFILES[atr]
    try:
        raw = bytes.fromhex(atr)
    except ValueError:
        raise CardImageError(f"unknown ATR profile {atr!r} (profiles: {', '.join(ATR_PROFILES)}, or hex)") from None
    if not 2 <= len(raw) <= 33 or raw[0] not in (0x3B, 0x3F):
        raise CardImageError(f"ATR {atr!r} is not a plausible ATR")
    return raw


# -- JSON helpers -----------------------------------------------------------------------------

def _need(doc, key, typ):
    value = doc[key]
    if not isinstance(value, typ):
        raise TypeError(f"{key} must be {typ.__name__}")
    return value


def _fid(text) -> int:
    value = int(text, 16)
    if not 0 <= value <= 0xFFFF or len(text) != 4:
        raise ValueError(f"bad identifier {text!r}")
    return value


def _hex(text) -> bytes:
    return bytes.fromhex(text)


def _b64(text) -> bytes:
    return base64.b64decode(text, validate=True)


def _access_to_json(access):
    if access in (FREE, NEVER):
        return access
    return [f"{fid:04X}" for fid in access]


def _access_from_json(value):
    if value in (FREE, NEVER):
        return value
    if isinstance(value, list) and value:
        return tuple(_fid(v) for v in value)
    raise ValueError(f"bad access rule {value!r}")


def _ef_to_json(ef) -> dict:
    out = {"fid": f"{ef.fid:04X}"}
    if ef.label:
        out["label"] = ef.label
    if isinstance(ef, BinaryEF):
        out.update(type="binary", read=_access_to_json(ef.read), data=base64.b64encode(ef.data).decode())
    elif isinstance(ef, RecordEF):
        out.update(type="record", read=_access_to_json(ef.read),
                   records=[base64.b64encode(r).decode() for r in ef.records])
    elif isinstance(ef, PinEF):
        out.update(type="pin", value=ef.value.decode("ascii"), max_tries=ef.max_tries,
                   remaining=ef.remaining, pattern=ef.pattern, change=ef.change)
    elif isinstance(ef, KeyEF):
        out.update(type="key", use=_access_to_json(ef.use), ops=list(ef.ops), default=ef.default,
                   key=ef.key_pem.decode("ascii"))
    elif isinstance(ef, OpaqueEF):
        out.update(type="opaque")
    else:  # pragma: no cover - programming error
        raise TypeError(type(ef))
    return out


def _ef_from_json(doc):
    kind = doc["type"]
    fid = _fid(doc["fid"])
    label = str(doc.get("label", ""))
    if kind == "binary":
        return BinaryEF(fid, _b64(doc["data"]), _access_from_json(doc["read"]), label)
    if kind == "record":
        return RecordEF(fid, [_b64(r) for r in _need(doc, "records", list)], _access_from_json(doc["read"]), label)
    if kind == "pin":
        max_tries, remaining = int(doc["max_tries"]), int(doc["remaining"])
        if not (1 <= max_tries <= 15 and 0 <= remaining <= max_tries):
            raise ValueError(f"PIN {doc['fid']}: tries {remaining}/{max_tries} out of range")
        change = doc.get("change", "iso")
        if change not in ("iso", "jicsap", "none"):
            raise ValueError(f"PIN {doc['fid']}: bad change method {change!r}")
        re.compile(doc["pattern"])
        return PinEF(fid, doc["value"].encode("ascii"), max_tries, remaining, doc["pattern"], change, label)
    if kind == "key":
        ops = tuple(doc.get("ops", ["sign"]))
        if set(ops) - {"sign", "internal_auth"}:
            raise ValueError(f"key {doc['fid']}: bad ops {ops}")
        pem = doc["key"].encode("ascii")
        if b"PRIVATE KEY" not in pem:
            raise ValueError(f"key {doc['fid']}: not a PEM private key")
        return KeyEF(fid, pem, _access_from_json(doc["use"]), ops, bool(doc.get("default", False)), label)
    if kind == "opaque":
        return OpaqueEF(fid, label)
    raise ValueError(f"unknown EF type {kind!r}")


def _app_to_json(app: Application) -> dict:
    out = {"name": app.name, "aid": app.aid.hex().upper(),
           "efs": [_ef_to_json(ef) for _, ef in sorted(app.efs.items())]}
    if app.sm_key_pem is not None:
        out["sm_key"] = app.sm_key_pem.decode("ascii")
    return out


def _app_from_json(doc) -> Application:
    aid = _hex(doc["aid"])
    if not 5 <= len(aid) <= 16:
        raise ValueError(f"AID {doc['aid']} must be 5..16 bytes")
    app = Application(str(doc["name"]), aid, {})
    if doc.get("sm_key") is not None:
        pem = doc["sm_key"].encode("ascii")
        if b"PRIVATE KEY" not in pem:
            raise ValueError(f"{app.name}: sm_key is not a PEM private key")
        app.sm_key_pem = pem
    for ef_doc in _need(doc, "efs", list):
        app.add(_ef_from_json(ef_doc))
    for ef in app.efs.values():
        for rule in (getattr(ef, "read", None), getattr(ef, "use", None)):
            if isinstance(rule, tuple):
                for ref in rule:
                    if not isinstance(app.efs.get(ref), PinEF):
                        raise ValueError(f"{app.name}/{ef.fid:04X}: access names {ref:04X}, not a PIN of this AP")
    return app
