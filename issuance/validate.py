"""One home for the rules on text and dates that cross the back office's edges.

The CLI (tools/cli/types.py) and the domain (identity.Identity, workflow.Workflow) both call
these functions, so the Python API is guarded exactly as the command line is. Every limit is
listed in docs/input-limits.md, and every error message names the field and the limit.

Text rules (every field):
- a str that is valid Unicode: lone surrogates (what Python makes of argv bytes that are not
  UTF-8) are refused;
- no control characters (Cc: NUL, TAB, CR, LF, ESC, DEL, C1 …), no line or paragraph
  separators (Zl, Zp) — a newline in an operator id would forge an audit line;
- no format characters (Cf): bidi embeddings/overrides/isolates (U+202A–202E, U+2066–2069),
  zero-width space/joiners (U+200B–200D), BOM (U+FEFF), soft hyphen … — they make the same
  bytes read differently on a terminal or a printed 住民票;
- no private-use (Co: 外字 go on the card as a 代替文字 with its flag set, ACT-5) and no
  unassigned code points (Cn, noncharacters included);
- no leading or trailing white space; required fields are non-empty;
- at most LIMITS[field] characters (code points).

Anything echoed back in a message goes through `shown()`: repr-escaped and cut short.
"""
from __future__ import annotations

import datetime as _dt
import math
import unicodedata

from mynaemu.card.limits import ADDRESS_MAX_CHARS, ADDRESS_SOURCE
# Bad input at an edge: a leaf class (issuance/errors.py) whose kind the CLI maps to exit 2.
from mynaemu.issuance.errors import InputError

__all__ = [
    "InputError", "LIMITS", "ID_LIMIT", "text", "optional_text", "audit_id", "ascii_token", "shown",
    "printable_line", "instant", "check_birth", "FIRST_BIRTH", "MAX_AGE", "INSTANT_FIRST",
    "INSTANT_LAST", "finite_seconds", "form_id_text", "naive_in_range", "age_on",
]



# Maximum length in characters (code points) of each free-text field. Generous against real
# 住民票 data (the longest real addresses, with 方書 — building and room — run to about 100
# characters; foreign residents' names in full-width Latin to about 60), tight against abuse.
LIMITS = {
    "name": 100,              # 氏名 (also a caller's 氏名, FLOW-SUSP-3)
    "name_kana": 200,         # ふりがな
    "address": ADDRESS_MAX_CHARS,  # 住所 incl. 方書 (also a caller's 住所): the card-side limit, 400
    "identity_check": 200,    # the identity check made at the counter (STATE-3 item 7, FLOW-SUSP-3)
    "reason": 200,            # free-text reasons / notes
    "notice_id": 64,          # a 交付通知書 id a proxy brings (FLOW-PROXY-2)
    "operator": 64,           # 操作者ID (SEC-4, DATA-3)
    "terminal": 64,           # 操作端末ID (DATA-3)
    "kiosk_id": 64,           # a kiosk's id at the centre
    "reader": 200,            # a PC/SC reader name
    "url": 2048,              # a service URL
    "romaji": 64,             # the signing certificate's L= values (§7.3)
}
ID_LIMIT = 64                 # an application / notice id as typed, before normalising
SHOWN_LIMIT = 40              # characters of a bad value echoed back in a message

_REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "a format character (bidi override, zero-width, BOM …)",
    "Cs": "bytes that are not UTF-8",
    "Co": "a private-use character (外字: use the 代替文字 and its flag)",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def shown(value, limit: int = SHOWN_LIMIT) -> str:
    """`value` safe to echo: repr-escaped (control, format and surrogate characters become
    escapes) and cut to `limit` characters with the full length named."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    if len(value) <= limit:
        return _escaped(value)
    return f"{_escaped(value[:limit])}… ({len(value)} characters)"


def _escaped(value: str) -> str:
    out = repr(value)
    # repr leaves printable non-ASCII alone; a character Python deems printable can still be a
    # Cf/Co/Cn one on another Unicode version: escape every code point that is not plainly text.
    return "".join(ch if _plain(ch) else f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
                   for ch in out)


def _plain(ch: str) -> bool:
    return ch.isprintable() and unicodedata.category(ch) not in _REFUSED_CATEGORIES


def printable_line(message: str, limit: int = 1000, *, first_line_only: bool = True) -> str:
    """A message made safe for one terminal line: the first line only (or, first_line_only=False,
    every line break escaped too), every non-printable code point escaped, at most `limit`
    characters. The last guard before a terminal."""
    text = str(message)
    first = (text.splitlines()[0] if text else "") if first_line_only else text
    safe = "".join(ch if (_plain(ch) or unicodedata.category(ch) == "Zs") else
                   (f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}") for ch in first)
    return safe if len(safe) <= limit else safe[:limit] + "…"


def _check_chars(value: str, field: str) -> None:
    for pos, ch in enumerate(value):
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES:
            raise InputError(f"{field} must not contain {_REFUSED_CATEGORIES[category]}: "
                             f"U+{ord(ch):04X} at position {pos + 1}")


def _base(field: str) -> str:
    return field.split(".")[-1].removeprefix("caller_")


def _limit(field: str, limit: int | None) -> int:
    if limit is not None:
        return limit
    return LIMITS.get(_base(field), LIMITS["reason"])


def text(value, field: str, *, limit: int | None = None) -> str:
    """A required free-text field: non-empty, within its limit, no refused characters, no
    white space at either end. Returns the value unchanged (no normalisation: what is accepted
    is stored and read back as given)."""
    maximum = _limit(field, limit)
    if not isinstance(value, str):
        raise InputError(f"{field} must be text, got {type(value).__name__}")
    if len(value) > maximum:
        source = f" ({ADDRESS_SOURCE})" if maximum == ADDRESS_MAX_CHARS and _base(field) == "address" else ""
        raise InputError(f"{field} is {len(value)} characters; the limit is {maximum}{source}")
    _check_chars(value, field)
    if not value.strip():
        raise InputError(f"{field} must be non-empty text")
    if value != value.strip():
        raise InputError(f"{field} must not start or end with spaces")
    return value


def optional_text(value, field: str, *, limit: int | None = None) -> str:
    """As text(), but "" is allowed (e.g. ふりがな left blank)."""
    if value == "":
        return value
    return text(value, field, limit=limit)


def audit_id(value, field: str) -> str:
    """An operator or terminal id for the audit (SEC-4, SEC-8): one line, 1..64 characters."""
    return text(value, field)


def ascii_token(value, field: str, *, limit: int | None = None) -> str:
    """Printable ASCII without spaces at the ends (romaji place names, kiosk ids, URLs)."""
    value = text(value, field, limit=limit)
    if not value.isascii():
        raise InputError(f"{field} must be ASCII, got {shown(value)}")
    return value


def form_id_text(value) -> str:
    """The raw shape of an id before store.check_form_id looks at its characters: text, valid
    Unicode, at most ID_LIMIT characters (so no error message quotes a megabyte)."""
    if not isinstance(value, str):
        raise InputError(f"an id must be text, got {type(value).__name__}")
    if len(value) > ID_LIMIT:
        raise InputError(f"id {shown(value)} is too long (the limit is {ID_LIMIT} characters)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"id {shown(value)} is not valid text (bytes that are not UTF-8)") from None
    _check_chars(value, "id")
    return value


# --- dates --------------------------------------------------------------------------------------

# The instants an operation may be dated: the range of UTCTime (RFC 5280 §4.1.2.5.1), which
# every TEST CA signs in — certificates, CRLs and the OCSP responder's clock all refuse anything
# else, so a later --at would only fail deeper down (in a server thread, as a traceback).
# Checked on the wall-clock year first, so no time-zone shift can overflow Python's datetime.
INSTANT_FIRST = _dt.datetime(1950, 1, 1, tzinfo=_dt.timezone.utc)
INSTANT_LAST = _dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=_dt.timezone.utc)

# 明治 1868-01-25 is the first day of the first era the card encodes (identity.ERAS: 照合番号B's
# era-year YYMMDD, §4.3; the signing certificate's era digit, §7.3). Nobody is older than 130.
FIRST_BIRTH = _dt.date(1868, 1, 25)
MAX_AGE = 130


def naive_in_range(value: _dt.datetime, field: str = "at") -> None:
    """Before any time-zone conversion: the wall-clock year must be one we accept, so converting
    cannot overflow (0001-01-01 +09:00 or 9999-12-31 -05:00 would)."""
    # one year of slack either side: any UTC offset (at most ±24 h) stays inside datetime's range
    if not INSTANT_FIRST.year - 1 <= value.year <= INSTANT_LAST.year + 1:
        raise InputError(f"{field} {value.isoformat()} is outside {_range_text()}")


def instant(value, field: str = "at") -> _dt.datetime:
    """An aware datetime within INSTANT_FIRST .. INSTANT_LAST (returned unchanged)."""
    if not isinstance(value, _dt.datetime):
        raise InputError(f"{field} must be a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise InputError(f"{field} must be timezone-aware (naive times are JST only at the CLI)")
    naive_in_range(value, field)
    if not INSTANT_FIRST <= value <= INSTANT_LAST:
        raise InputError(f"{field} {value.isoformat()} is outside {_range_text()}")
    return value


def _range_text() -> str:
    return (f"{INSTANT_FIRST:%Y-%m-%dT%H:%M:%SZ} .. {INSTANT_LAST:%Y-%m-%dT%H:%M:%SZ} "
            "(UTCTime, which the TEST CAs sign in)")


def age_on(birth: _dt.date, day: _dt.date) -> int:
    years = day.year - birth.year
    if (day.month, day.day) < (birth.month, birth.day):
        years -= 1
    return years


def check_birth(value, field: str = "birth", *, on: _dt.date | None = None) -> _dt.date:
    """A birth date: a date (not a datetime), on or after 明治 1868-01-25 and, with `on`, not
    after `on` and at most MAX_AGE years before it."""
    if not isinstance(value, _dt.date) or isinstance(value, _dt.datetime):
        raise InputError(f"{field} must be a date")
    if value < FIRST_BIRTH:
        raise InputError(f"{field} {value.isoformat()} is before 明治 ({FIRST_BIRTH.isoformat()}), the first "
                         "era the card can encode")
    if on is not None:
        if value > on:
            raise InputError(f"{field} {value.isoformat()} is after the day of the operation {on.isoformat()}")
        age = age_on(value, on)
        if age > MAX_AGE:
            raise InputError(f"{field} {value.isoformat()} makes the holder {age} on {on.isoformat()}; "
                             f"the limit is {MAX_AGE} years")
    return value


def finite_seconds(value, field: str, *, low: float, high: float) -> float:
    """A number of seconds: finite (no nan, no inf) and within low..high."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{field} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value):
        raise InputError(f"{field} must be a finite number of seconds, got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{field} must be between {low:g} and {high:g} seconds, got {value:g}")
    return float(value)
