"""Staff accounts: the first officer, new accounts, passwords, grants, withdrawals, revocation.

SEC-4 one ID per person (IDs are never reused: a revoked account's row stays), SEC-5 ageing
(passwords.py), SEC-6 rights from the table (rights.py) granted by the security officer,
SEC-7 an ID revoked the day its holder leaves. Every change is audited through audit.record
in the same transaction as the change, so a change without its record cannot commit.

Who may call what is decided before these run (authorise.py); these methods check only what
the data itself forbids (a duplicate ID, an unknown right, the last officer).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import re

from mynaemu.issuance.staff import audit, passwords
from mynaemu.issuance.staff.rights import RIGHTS, ROLES
from mynaemu.issuance.store import iso, parse_iso
from mynaemu.issuance.store.values import scrub
from mynaemu.issuance.store.staff import StaffTable
from mynaemu.issuance.validate import InputError, shown

__all__ = ["StaffError", "StaffRefused", "UnknownStaff", "StaffInputError", "Accounts", "check_staff_id",
           "STAFF_ID_PATTERN"]

# A staff ID: 1-32 of a-z 0-9 . _ -, starting with a letter or digit. Compared and stored in
# lower case, so "Sato" and "sato" can never be two people (SEC-4: no shared or look-alike IDs).
STAFF_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}\Z")


class StaffError(Exception):
    """A staff step that cannot be done (one line)."""


class StaffRefused(StaffError):
    """The data forbids the step: an ID that exists, a store that already has staff, the last officer."""


class UnknownStaff(StaffError):
    """No such staff ID (only said to an authenticated officer)."""


class StaffInputError(InputError):
    """A malformed staff ID, right or password (exit 2 at the CLI)."""


def check_staff_id(text) -> str:
    if not isinstance(text, str):
        raise StaffInputError("a staff ID is text")
    staff_id = text.lower()
    if not STAFF_ID_PATTERN.match(staff_id):
        raise StaffInputError(f"bad staff ID {shown(text, 40)}: 1-32 of a-z 0-9 . _ -, starting with a letter "
                              "or digit")
    if scrub(staff_id) != staff_id:
        # it would read as a 個人番号: the audit masks such runs (values.scrub), so the trail could
        # no longer tell who acted (SEC-8), and a number must not serve as a staff ID (SEC-1)
        raise StaffInputError("a staff ID must not hold a run of exactly 12 digits (it reads as a 個人番号)")
    return staff_id


def check_right(text) -> str:
    if text not in RIGHTS:
        raise StaffInputError(f"unknown right {shown(text, 40)}; rights: {', '.join(RIGHTS)}")
    return text


@dataclasses.dataclass(frozen=True)
class StaffView:
    id: str
    rights: tuple[str, ...]          # held at the instant asked about
    created_at: str
    created_by: str
    password_set_at: str
    password_expires_at: str
    revoked_at: str | None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Accounts:
    """The staff accounts of one open store."""

    def __init__(self, store, *, terminal: str = "cli", hasher=None):
        self.store = store
        self.table = StaffTable(store)
        self.terminal = terminal
        self._hasher = hasher   # None: passwords.py's parameters (tests may pass cheaper ones)

    def _hash(self, password: str) -> str:
        return passwords.hash_password(password, self._hasher)

    def _audit(self, actor, action, target, at, reason=None, outcome="ok"):
        audit.record(self.store, actor=actor, action=action, target=target, outcome=outcome, at=at,
                     terminal=self.terminal, reason=reason)

    def has_staff(self) -> bool:
        return self.table.count() > 0

    # --- the first officer ----------------------------------------------------------------
    def init_officer(self, officer_id: str, *, at: _dt.datetime, password: str | None = None) -> str:
        """The first セキュリティ責任者 of a store without staff; returns the initial password.

        Also the migration of a store made before accounts existed: its data stays, and from now
        on every `issue` command authenticates."""
        officer_id = check_staff_id(officer_id)
        password = password or passwords.new_initial_password()
        encoded = self._hash(password)   # outside the write lock: hashing takes a while
        with self.store.transaction():
            self.table.lock()
            if self.table.count():
                raise StaffRefused("this store already has staff accounts; the security officer adds more "
                                   "with `mynaemu issue staff add`")
            self.table.insert(officer_id, encoded, at=iso(at), by=officer_id)
            self.table.grant(officer_id, "officer", at=iso(at), by=officer_id)
            self._audit(officer_id, "init", officer_id, at, "first security officer (SEC-6)")
        return password

    # --- the officer's work -----------------------------------------------------------------
    def add(self, actor: str, staff_id: str, role: str, *, at: _dt.datetime) -> str:
        """A new account holding `role`; returns its initial password (to be printed once)."""
        staff_id = check_staff_id(staff_id)
        if role not in ROLES:
            raise StaffInputError(f"unknown role {shown(role, 40)}; roles: {', '.join(ROLES)}")
        password = passwords.new_initial_password()
        encoded = self._hash(password)
        with self.store.transaction():
            self.table.lock()
            if self.table.get(staff_id) is not None:
                raise StaffRefused(f"staff ID {staff_id} exists already (IDs are never reused, SEC-4)")
            self.table.insert(staff_id, encoded, at=iso(at), by=actor)
            self.table.grant(staff_id, role, at=iso(at), by=actor)
            self._audit(actor, "staff add", staff_id, at, f"role {role}")
        return password

    def _existing(self, staff_id: str):
        row = self.table.get(staff_id)
        if row is None:
            raise UnknownStaff(f"no staff ID {staff_id}")
        return row

    def grant(self, actor: str, staff_id: str, right: str, *, at: _dt.datetime) -> None:
        staff_id, right = check_staff_id(staff_id), check_right(right)
        with self.store.transaction():
            self.table.lock()
            row = self._existing(staff_id)
            if row["revoked_at"] is not None:
                raise StaffRefused(f"staff ID {staff_id} is revoked (SEC-7); a revoked ID gets no rights")
            if self.table.open_grants(staff_id, right):
                raise StaffRefused(f"staff ID {staff_id} holds {right} already")
            self.table.grant(staff_id, right, at=iso(at), by=actor)
            self._audit(actor, "staff grant", staff_id, at, f"right {right}")

    def withdraw(self, actor: str, staff_id: str, right: str, *, at: _dt.datetime) -> None:
        staff_id, right = check_staff_id(staff_id), check_right(right)
        with self.store.transaction():
            self.table.lock()
            self._existing(staff_id)
            if not self.table.open_grants(staff_id, right):
                raise StaffRefused(f"staff ID {staff_id} does not hold {right}")
            if right == "officer":
                self._keep_an_officer(staff_id)
            self.table.withdraw(staff_id, right, at=iso(at), by=actor)
            self._audit(actor, "staff revoke", staff_id, at, f"right {right} withdrawn (SEC-7)")

    def revoke(self, actor: str, staff_id: str, *, at: _dt.datetime) -> None:
        """SEC-7: the ID stops working for every step dated at or after `at`."""
        staff_id = check_staff_id(staff_id)
        with self.store.transaction():
            self.table.lock()
            row = self._existing(staff_id)
            if row["revoked_at"] is not None:
                raise StaffRefused(f"staff ID {staff_id} was revoked already")
            self._keep_an_officer(staff_id)
            self.table.revoke(staff_id, at=iso(at), by=actor)
            self._audit(actor, "staff revoke", staff_id, at, "ID revoked (SEC-7)")

    def _keep_an_officer(self, leaving: str) -> None:
        """Refuse the change that would leave no security officer: nobody could add or revoke
        staff again (SEC-6, SEC-7 need one)."""
        for row in self.table.all():
            if row["id"] != leaving and row["revoked_at"] is None and self.table.open_grants(row["id"], "officer"):
                return
        raise StaffRefused(f"staff ID {leaving} is the last security officer; add or grant another officer first")

    # --- one's own password ----------------------------------------------------------------
    def passwd(self, actor: str, new_password: str, *, at: _dt.datetime) -> None:
        """SEC-5: the new password counts its 3 months from `at`."""
        try:
            passwords.check_new_password(new_password, staff_id=actor)
        except passwords.PasswordRuleError as exc:
            raise StaffInputError(str(exc)) from None
        row = self._existing(actor)
        if passwords.verify_password(row["password_hash"], new_password):
            raise StaffInputError("the new password is the current one; choose another (SEC-5)")
        encoded = self._hash(new_password)
        with self.store.transaction():
            self.table.lock()
            self._existing(actor)
            self.table.set_password(actor, encoded, at=iso(at))
            self._audit(actor, "staff passwd", actor, at, "password changed")

    # --- reads -------------------------------------------------------------------------------
    def list(self, at: _dt.datetime, *, actor: str | None = None) -> list[StaffView]:
        """Every account as of `at`; with `actor`, the read is an audit record (SEC-8)."""
        out = []
        for row in self.table.all():
            set_at = parse_iso(row["password_set_at"])
            out.append(StaffView(
                id=row["id"], rights=tuple(r for r in RIGHTS if r in self.table.rights_at(row["id"], iso(at))),
                created_at=row["created_at"], created_by=row["created_by"], password_set_at=row["password_set_at"],
                password_expires_at=iso(passwords.expires_at(set_at)), revoked_at=row["revoked_at"]))
        if actor is not None:
            self._audit(actor, "staff list", None, at, f"{len(out)} accounts")
        return out

