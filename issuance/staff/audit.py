"""The one audit call of the staff layer: (actor, action, target, outcome) into the store's trail.

Every refusal of an authentication or authorisation (SEC-8: failed attempts are logged) and every
staff action (account made, password changed, right granted or withdrawn, ID revoked: SEC-6,
SEC-7) goes through ``record``. Today it writes the store's existing audit records
(Store.audit, which masks 12-digit runs); a tamper-evident trail replaces what is under it
without changing a caller.

Never pass a password here: the reason names what happened, not what was typed.
"""
from __future__ import annotations

import datetime as _dt

__all__ = ["record", "NO_ACTOR", "INVALID_ACTOR"]

NO_ACTOR = "(none)"          # no --operator / MYNAEMU_OPERATOR was given
INVALID_ACTOR = "(invalid)"  # the given operator ID is not a well-formed staff ID (not echoed)


def record(store, *, actor: str, action: str, target: str | None, outcome: str, at: _dt.datetime,
           terminal: str, reason: str | None = None, detail: dict | None = None) -> int:
    """Append one record: who (`actor`), what (`action`: the operation, e.g. ``staff add`` or
    ``apply``), on what (`target`), how it ended (``ok``, ``refused``, ``error``), with the step's
    instant and terminal. Joins the caller's transaction when one is open, else commits its own."""
    return store.audit(at=at, operator=actor or NO_ACTOR, terminal=terminal or "-", operation=action,
                       target=target, outcome=outcome, reason=reason, detail=detail)
