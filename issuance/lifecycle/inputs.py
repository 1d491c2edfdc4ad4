"""The checks the workflow's steps run on their inputs (validate.py's rules, docs/input-limits.md,
raised as BadInput) and the forms values take in its messages and audit records."""
from __future__ import annotations

import datetime as _dt

from mynaemu.card.limits import LimitError, check_address

from mynaemu.issuance import policy, validate
from mynaemu.issuance.store import check_form_id, parse_iso
from mynaemu.issuance.errors import BadInput

__all__ = ["valid", "valid_text", "valid_address", "aware", "jst_text", "audit_target", "hex_serial"]


def valid(check, *args, **kwargs):
    """Run a validate.py check; its InputError becomes this module's BadInput."""
    try:
        return check(*args, **kwargs)
    except validate.InputError as exc:
        raise BadInput(str(exc)) from None


def aware(at) -> _dt.datetime:
    valid(validate.instant, at, "at")  # aware, 1950 .. 2099 (docs/input-limits.md)
    return at.astimezone(_dt.timezone.utc).replace(microsecond=0).astimezone(_dt.timezone.utc).replace(microsecond=0)


def jst_text(text_or_dt) -> str:
    value = parse_iso(text_or_dt) if isinstance(text_or_dt, str) else text_or_dt
    return value.astimezone(policy.JST).isoformat()


def valid_text(value, what: str) -> str:
    return valid(validate.text, value, what)  # docs/input-limits.md


def valid_address(value) -> str:
    """A 住所 the card can carry: card/limits.py ADDRESS_MAX_CHARS is binding (spec §13.4)."""
    try:
        return check_address(valid_text(value, "address"))
    except LimitError as exc:
        raise BadInput(str(exc)) from None


def audit_target(app_id) -> str | None:
    try:
        return check_form_id(app_id)
    except (ValueError, TypeError):
        # a bad id is audited escaped and cut short (it may be bytes that are not UTF-8)
        return validate.shown(app_id) if app_id is not None else None


def hex_serial(serial: int | None) -> str | None:
    return f"{serial:X}" if serial is not None else None
