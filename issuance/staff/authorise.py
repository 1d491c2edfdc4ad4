"""The authorisation decision: who is asking (ID + password), may they, at this step's instant?

One function, ``authorise``, runs before every `issue` command (and every step of the demo):

1. credentials given? (SEC-4: an ID and a password; none → refused)
2. the store has staff? (a store made before accounts, or a new one, first needs
   ``mynaemu issue init --officer ID``)
3. the password verifies against the ID's hash. An unknown or malformed ID costs one dummy
   verification with the same parameters, and both failures say the same words, so a refusal
   does not tell whether the ID exists;
4. the ID is not revoked at the step's instant (SEC-7: revoked at R refuses steps at T >= R);
5. the password is not 3 months old at the step's instant (SEC-5, passwords.py; ``staff passwd``
   is the one operation an aged password may still run);
6. the rights held at the step's instant allow the operation (SEC-6, rights.py; a grant at G
   counts for steps at T >= G, a withdrawal at W from T >= W; the 個人番号 in full also needs the
   ``number`` right, SEC-1).

Checks 4-6 run only after the password verified, so they tell nothing to someone who does not
know it. Every refusal is audited (SEC-8) through audit.record and raises AuthRefused; nothing
else in the store changes.
"""
from __future__ import annotations

import datetime as _dt

from mynaemu.issuance.clock import JST
from mynaemu.issuance.staff import audit, passwords
from mynaemu.issuance.staff.accounts import STAFF_ID_PATTERN
from mynaemu.issuance.staff.rights import NUMBER, decide, roles_for
from mynaemu.issuance.store import iso, parse_iso
from mynaemu.issuance.store.staff import StaffTable

__all__ = ["AuthRefused", "authorise", "WRONG_CREDENTIALS"]

WRONG_CREDENTIALS = "authentication failed: unknown staff ID or wrong password (SEC-4)"



class AuthRefused(Exception):
    """An authentication or authorisation refusal (exit 5 at the CLI). `kind` is one of
    credentials, no-staff, revoked, aged, role, number."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _local(text: str) -> str:
    return parse_iso(text).astimezone(JST).isoformat(timespec="seconds")


def authorise(store, *, operator: str | None, password: str | None, operation: str, at: _dt.datetime,
              terminal: str, target: str | None = None) -> str:
    """The staff ID (lower case) allowed to run `operation` at `at`; else audit and AuthRefused."""
    def refuse(kind: str, message: str, actor: str):
        audit.record(store, actor=actor, action=operation, target=target, outcome="refused", at=at,
                     terminal=terminal, reason=f"{kind}: {message}")
        raise AuthRefused(kind, message)

    given = (operator or "").strip()
    if not given or password is None or password == "":
        refuse("credentials", "no credentials: give --operator ID (or MYNAEMU_OPERATOR) and the password in "
                              "MYNAEMU_PASSWORD or at the prompt (SEC-4)",
               audit.NO_ACTOR if not given else _actor(given))
    table = StaffTable(store)
    staff_id = given.lower()
    if not table.count():
        refuse("no-staff", "this store has no staff accounts yet: create the first security officer with "
                           "`mynaemu issue init --officer ID` (SEC-4)", _actor(given))
    row = table.get(staff_id) if STAFF_ID_PATTERN.match(staff_id) else None
    ok = passwords.verify_password(row["password_hash"], password) if row is not None \
        else passwords.dummy_verify(password)
    if not ok:
        refuse("credentials", WRONG_CREDENTIALS, _actor(given))
    when = iso(at)
    if row["revoked_at"] is not None and when >= row["revoked_at"]:
        refuse("revoked", f"staff ID {staff_id} was revoked at {_local(row['revoked_at'])} (SEC-7)", staff_id)
    set_at = parse_iso(row["password_set_at"])
    if operation != "staff passwd" and passwords.is_aged(set_at, at):
        refuse("aged", f"the password of {staff_id} was set at {_local(row['password_set_at'])} and stopped "
                       f"working at {passwords.expires_at(set_at).isoformat(timespec='seconds')}: unchanged for "
                       f"3 months (SEC-5); change it with `mynaemu issue staff passwd`", staff_id)
    held = table.rights_at(staff_id, when)
    decision = decide(operation, held)
    if not decision.allowed:
        if decision.missing == NUMBER:
            refuse("number", f"{staff_id} lacks the right {NUMBER} that the 個人番号 in full needs (SEC-1)", staff_id)
        refuse("role", f"{staff_id} holds no role that may run {operation} (it needs one of: "
                       f"{', '.join(roles_for(operation))}; held: {', '.join(sorted(held)) or 'none'}) (SEC-6)",
               staff_id)
    return staff_id


def _actor(given: str) -> str:
    """The operator ID as the audit may record it: a well-formed ID (lower case), else a marker
    (a malformed one may be a password typed into the wrong field, or control characters)."""
    staff_id = given.lower()
    return staff_id if STAFF_ID_PATTERN.match(staff_id) else audit.INVALID_ACTOR
