"""The forms the store keeps values in: instants as UTC text, scrubbed text, state and event names, its home."""
from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path

import platformdirs


# STATE-1 card lifecycle codes (Japanese labels live in lifecycle/workflow.py).
CARD_STATES = ("applied", "received", "issued", "awaiting_delivery", "active", "suspended",
               "abolished", "collected", "destroyed", "revoked")

CERT_EVENTS = ("issued", "hold", "released", "revoked")

# RFC 5280 §5.3.1 reason names used in cert_events.reason for "revoked"
REVOCATION_REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded",
                      "cessationOfOperation", "privilegeWithdrawn")

# Cards waiting for `generate` (申請, 受付): what batch workers claim.
QUEUE_STATES = ("applied", "received")


def default_home() -> Path:
    """MYNAEMU_HOME, else the user's data directory for mynaemu."""
    env = os.environ.get("MYNAEMU_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("mynaemu"))


_TWELVE_DIGITS = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")


def scrub(text):
    """Mask any 12-digit run (a 個人番号, NUM-1) in text destined for the audit or a log."""
    if text is None:
        return None
    return _TWELVE_DIGITS.sub("************", str(text))


def iso(instant: _dt.datetime) -> str:
    """An aware instant as ISO 8601 in UTC, to the second (sortable as text)."""
    if not isinstance(instant, _dt.datetime) or instant.utcoffset() is None:
        raise ValueError("instants must be timezone-aware datetimes")
    return instant.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat()


def parse_iso(text: str) -> _dt.datetime:
    return _dt.datetime.fromisoformat(text)


def where(equal: dict, *, since: _dt.datetime | None = None, until: _dt.datetime | None = None,
          column: str = "at") -> tuple[str, list]:
    """A WHERE clause ("" when nothing is asked) and its parameters: each column of `equal` whose
    value is not None equal to it, and `column` in [since, until) (aware instants, stored as iso).
    The column names are the caller's own constants, never input."""
    clauses, params = [], []
    for name, value in equal.items():
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value)
    for op, instant in ((">=", since), ("<", until)):
        if instant is not None:
            clauses.append(f"{column} {op} ?")
            params.append(iso(instant))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
