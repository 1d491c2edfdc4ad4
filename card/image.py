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

A card is in one reader at a time: whoever powers the image (a door: the in-process Card,
`card apdu`, `card serve`, the kiosk) or rewrites it (the back office) holds an exclusive
lock on it for the whole session (CardSession), and a second one gets CardInUse after a
bounded wait - never a free PIN try. The lock is a flock() on the sibling file `.NAME.lock`
of the real image (symlinks resolved): a lock on the image itself would be lost at the first
save, which replaces its inode. The kernel drops it when the holder dies, even by SIGKILL.

File rules (card/safefile.py): an image must be a regular file of at most MAX_IMAGE_BYTES;
FIFOs, devices and directories are refused at once; JSON with NaN/Infinity, duplicate keys or
nesting deeper than MAX_DEPTH is refused before any field is looked at.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import re
import stat
from pathlib import Path
from typing import Union

from mynaemu.card.safefile import (
    FileLock, LockBusy, UnsafeFile, check_replaceable, kind_of, parse_json as _parse_json, read_regular,
    real_path, write_file_atomic,
)

__all__ = ["CardImage", "CardImageError", "CardInUse", "CardSession", "write_file_atomic",
           "save_json_atomic"]

FORMAT = "mynaemu-card-image"
VERSION = 1

# spec §1.2, §13.3: the ATR profiles (bytes, sources and TCK check in card/atr.py,
# docs/atr-profiles.md); an image names one, or gives its own hex.
from mynaemu.card.atr import ATR_PROFILES  # noqa: E402

FREE = "free"
NEVER = "never"
Access = Union[str, tuple]  # FREE, NEVER, or a tuple of PIN FIDs (ints), any one suffices


UNKNOWN_EF_SWS = ("6981", "6982", "6985", "6986")

# An image is a few tens of KiB (the largest persona, with 券面 images, about 60 KiB).
MAX_IMAGE_BYTES = 4 * 1024 * 1024
# The format nests 5 deep; `meta` is free-form but flat in practice.
MAX_DEPTH = 32
# A PIN pattern is a short regular expression ("[0-9]{4}", "[0-9A-Z]{6,16}").
MAX_PATTERN = 200
# How long a door or writer waits for a card another one holds before "card in use".
LOCK_WAIT = 3.0


class CardImageError(Exception):
    """A card image that cannot be read or is not valid; the message is one line."""


class CardInUse(CardImageError):
    """The card image is held by another door or writer (a card is in one reader at a time)."""


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
            raise CardImageError(f"not a {FORMAT} file (format={repr(doc.get('format'))[:60]})")
        version = doc.get("version")
        if type(version) is not int or version != VERSION:     # true and 1.0 are not 1
            raise CardImageError(f"unsupported version {repr(version)[:60]} (this build reads {VERSION})")
        try:
            options = _options_from_json(_opt(doc, "options", dict, {}))
            image = cls(
                applications=[_app_from_json(a) for a in _need(doc, "applications", list)],
                label=_opt(doc, "label", str, ""),
                atr=_opt(doc, "atr", str, "contact"),
                options=options,
                get_data={_fid(k): _hex(v) for k, v in _opt(doc, "get_data", dict, {}).items()},
                meta=dict(_opt(doc, "meta", dict, {})),
            )
            atr_bytes(image.atr)
        except CardImageError:
            raise
        except KeyError as exc:
            raise CardImageError(f"malformed: missing field {exc}") from None
        except (TypeError, ValueError, binascii.Error, re.error) as exc:
            raise CardImageError(f"malformed: {_one_line(exc)}") from None
        names = [a.name for a in image.applications]
        if len(set(names)) != len(names):
            raise CardImageError("duplicate application names")
        return image

    # -- files ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path) -> "CardImage":
        """Read and validate the image at `path` (symlinks followed); CardImageError naming it."""
        try:
            raw = read_regular(path, limit=MAX_IMAGE_BYTES)
        except OSError as exc:
            raise CardImageError(_os_message(path, exc, "cannot read")) from None
        try:
            doc = _parse_json(raw, max_depth=MAX_DEPTH)
        except ValueError as exc:
            raise CardImageError(f"{path}: not a card image ({_one_line(exc)})") from None
        try:
            return cls.from_json(doc)
        except CardImageError as exc:
            raise CardImageError(f"{path}: {exc}") from None

    def save(self, path, *, lock: "CardSession | None" = None) -> None:
        """Write atomically (temp file, fsync, rename, fsync the folder), 0600, under the card's lock.

        `lock`: the CardSession holding this card (its door or writer); without one, the lock
        is taken for the write (CardInUse when another holds the card beyond LOCK_WAIT).
        """
        data = json.dumps(self.to_json(), ensure_ascii=False, indent=1).encode("utf-8")
        if lock is not None:
            lock.write(data)
            return
        check_replaceable(path)            # no lock file beside a device, FIFO or directory
        with _card_lock(path, door="writer", wait=LOCK_WAIT):
            # One writer under the lock: the fixed temp name leaves at most one stale temp
            # file after a kill, which the next save removes.
            _write(path, data)


def _write(path, data: bytes) -> None:
    try:
        write_file_atomic(path, data, single_writer=True)
    except UnsafeFile:
        raise
    except OSError as exc:
        # core._commit turns an OSError into 6581; the CLI shows one line naming the file.
        raise OSError(_os_message(path, exc, "cannot write")) from None


def save_json_atomic(path, doc) -> None:
    """Any JSON document, written atomically and 0600 (no card lock: not for card images)."""
    write_file_atomic(path, json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8"))


# -- the card's lock ----------------------------------------------------------------------------

def lock_path_for(path) -> Path:
    """The lock file of the image at `path`: `.NAME.lock` beside the real (symlink-resolved) file."""
    target = real_path(path)
    return target.parent / f".{target.name}.lock"


def _card_lock(path, *, door: str, wait: float) -> FileLock:
    try:
        return FileLock(lock_path_for(path), wait=wait, note=door)
    except LockBusy as exc:
        raise CardInUse(f"{path}: card in use ({exc.holder or 'held by another door'}): a card is in "
                        f"one reader at a time; try again when it is released") from None
    except OSError as exc:
        raise CardImageError(_os_message(lock_path_for(path), exc, "cannot lock the card")) from None


class CardSession:
    """A card image held for one session: locked, then loaded; saved under the same lock.

    The door that powers a card (Card.from_file) and the back office rewriting a card file use
    one; it is released by close() (or when the holding process dies). `door` names the holder
    in the "card in use" message another door gets.
    """

    def __init__(self, path, *, door: str = "in-process card", wait: float = LOCK_WAIT):
        self.path = Path(path)
        self.target = real_path(path)
        # Refuse a missing file, FIFO, device or directory before making its lock file (no
        # `.null.lock` in /dev); CardImage.load checks again on the opened descriptor.
        try:
            st = os.stat(self.target)
        except OSError as exc:
            raise CardImageError(_os_message(path, exc, "cannot read")) from None
        if not stat.S_ISREG(st.st_mode):
            raise CardImageError(f"{path}: {kind_of(st.st_mode)}, not a regular file; not a card image")
        self._lock = _card_lock(path, door=door, wait=wait)
        try:
            self.image = CardImage.load(self.target if self.target != self.path else self.path)
        except BaseException:
            self._lock.release()
            raise

    @property
    def held(self) -> bool:
        return self._lock.held

    def save(self, image: "CardImage | None" = None) -> None:
        (image if image is not None else self.image).save(self.path, lock=self)

    def write(self, data: bytes) -> None:
        if not self._lock.held:
            raise OSError(f"{self.path}: the card was released; its state cannot be written")
        _write(self.target, data)

    def close(self) -> None:
        self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _one_line(exc) -> str:
    text = "".join(c if c.isprintable() else " " for c in str(exc)).strip()   # one line, no escapes
    return text[:300] if text else type(exc).__name__


def _os_message(path, exc: OSError, what: str) -> str:
    if isinstance(exc, UnsafeFile):
        return str(exc)
    return f"{path}: {what}: {exc.strerror or exc}"


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

_TYPE_NAMES = {str: "a string", list: "a list", dict: "an object", int: "an integer", bool: "true or false"}


def _check(value, typ, what):
    # bool is an int in Python; a JSON true is never a count, and 1 is never a flag.
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise TypeError(f"{what} must be {_TYPE_NAMES.get(typ, typ.__name__)}, not {_json_type(value)}")
    return value


def _json_type(value) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _need(doc, key, typ):
    if not isinstance(doc, dict):
        raise TypeError(f"expected an object, not {_json_type(doc)}")
    return _check(doc[key], typ, key)


def _opt(doc, key, typ, default):
    if key not in doc:
        return default
    return _check(doc[key], typ, key)


def _options_from_json(doc) -> CardOptions:
    fields = {f.name: f for f in dataclasses.fields(CardOptions)}
    values = {}
    for key, value in doc.items():
        if key not in fields:
            raise ValueError(f"unknown option {key[:40]!r}")
        values[key] = _check(value, type(fields[key].default), f"option {key}")
    return CardOptions(**values)


def _fid(text) -> int:
    if not isinstance(text, str) or not re.fullmatch(r"[0-9A-Fa-f]{4}", text):
        raise ValueError(f"bad identifier {str(text)[:40]!r} (4 hex digits)")
    return int(text, 16)


def _hex(text) -> bytes:
    return bytes.fromhex(_check(text, str, "hex data"))


def _b64(text) -> bytes:
    return base64.b64decode(_check(text, str, "base64 data").encode("ascii"), validate=True)


def _access_to_json(access):
    if access in (FREE, NEVER):
        return access
    return [f"{fid:04X}" for fid in access]


def _access_from_json(value):
    if isinstance(value, str) and value in (FREE, NEVER):
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
    kind = _need(doc, "type", str)
    fid = _fid(doc["fid"])
    label = _opt(doc, "label", str, "")
    if kind == "binary":
        return BinaryEF(fid, _b64(doc["data"]), _access_from_json(doc["read"]), label)
    if kind == "record":
        return RecordEF(fid, [_b64(r) for r in _need(doc, "records", list)], _access_from_json(doc["read"]), label)
    if kind == "pin":
        max_tries, remaining = _need(doc, "max_tries", int), _need(doc, "remaining", int)
        if not (1 <= max_tries <= 15 and 0 <= remaining <= max_tries):
            raise ValueError(f"PIN {fid:04X}: tries {remaining}/{max_tries} out of range")
        change = _opt(doc, "change", str, "iso")
        if change not in ("iso", "jicsap", "none"):
            raise ValueError(f"PIN {fid:04X}: bad change method {change[:20]!r}")
        pattern = _need(doc, "pattern", str)
        if len(pattern) > MAX_PATTERN:
            raise ValueError(f"PIN {fid:04X}: pattern longer than {MAX_PATTERN} characters")
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            raise ValueError(f"PIN {fid:04X}: bad pattern ({_one_line(exc)})") from None
        value = _need(doc, "value", str)
        if not value.isascii() or len(value) > 255:
            raise ValueError(f"PIN {fid:04X}: the value must be at most 255 ASCII characters")
        return PinEF(fid, value.encode("ascii"), max_tries, remaining, pattern, change, label)
    if kind == "key":
        ops = tuple(_check(op, str, "ops entry") for op in _opt(doc, "ops", list, ["sign"]))
        if set(ops) - {"sign", "internal_auth"}:
            raise ValueError(f"key {fid:04X}: bad ops {[op[:20] for op in ops]}")
        key = _need(doc, "key", str)
        if not key.isascii() or "PRIVATE KEY" not in key:
            raise ValueError(f"key {fid:04X}: not a PEM private key")
        return KeyEF(fid, key.encode("ascii"), _access_from_json(doc["use"]), ops,
                     _opt(doc, "default", bool, False), label)
    if kind == "opaque":
        return OpaqueEF(fid, label)
    raise ValueError(f"unknown EF type {kind[:20]!r}")


def _app_to_json(app: Application) -> dict:
    out = {"name": app.name, "aid": app.aid.hex().upper(),
           "efs": [_ef_to_json(ef) for _, ef in sorted(app.efs.items())]}
    if app.sm_key_pem is not None:
        out["sm_key"] = app.sm_key_pem.decode("ascii")
    return out


def _app_from_json(doc) -> Application:
    aid = _hex(_need(doc, "aid", str))
    if not 5 <= len(aid) <= 16:
        raise ValueError(f"AID {doc['aid'][:40]} must be 5..16 bytes")
    app = Application(_need(doc, "name", str), aid, {})
    sm_key = _opt(doc, "sm_key", str, None) if doc.get("sm_key") is not None else None
    if sm_key is not None:
        if not sm_key.isascii() or "PRIVATE KEY" not in sm_key:
            raise ValueError(f"{app.name}: sm_key is not a PEM private key")
        app.sm_key_pem = sm_key.encode("ascii")
    for ef_doc in _need(doc, "efs", list):
        app.add(_ef_from_json(ef_doc))
    for ef in app.efs.values():
        for rule in (getattr(ef, "read", None), getattr(ef, "use", None)):
            if isinstance(rule, tuple):
                for ref in rule:
                    if not isinstance(app.efs.get(ref), PinEF):
                        raise ValueError(f"{app.name}/{ef.fid:04X}: access names {ref:04X}, not a PIN of this AP")
    return app
