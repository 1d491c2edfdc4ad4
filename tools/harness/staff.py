"""A staff account for test harnesses (the `myna_office` fixture, this project's own tests): every
`mynaemu issue` command authenticates since issue 13, so a test office needs a member of staff.

``all_rights_account(store, staff_id, password)`` puts into the store, through the real accounts
API (issuance/staff/accounts.py), an account holding the given rights (default: every role and
the ``number`` right):

- it starts at 1950-01-01 JST (the earliest --at the CLI takes), so its rights hold at every
  instant a test drives (a grant counts only for steps dated at or after it);
- its password is set at 2049-12-31 23:00 JST (``staff passwd``; 2049 is the last year the CLI
  takes): a step dated before the instant a password was set is never refused for age (SEC-5 as
  issue 13 defines it), so no test date ages it;
- the hash is Argon2id with argon2-cffi's cheapest parameters, recorded in the hash, so the real
  verification runs without 0.1 s per command. Only for tests: real accounts use
  issuance/staff/passwords.py's parameters.
The first account of a store is its security officer, as ``issue init`` makes it.
"""
from __future__ import annotations

import datetime as _dt

from mynaemu.issuance.clock import JST

__all__ = ["all_rights_account", "START", "PASSWORD_SET"]

START = _dt.datetime(1950, 1, 1, tzinfo=JST)
PASSWORD_SET = _dt.datetime(2049, 12, 31, 23, 0, tzinfo=JST)
_FIRST = "Office-first-passw0rd"


def cheap_hasher():
    from argon2 import PasswordHasher, profiles

    return PasswordHasher.from_parameters(profiles.CHEAPEST)


def all_rights_account(store, staff_id: str, password: str, *, rights=None, terminal: str = "pytest") -> str:
    """Make `staff_id` (lower-cased, returned) with `rights` and `password` in the open `store`."""
    from mynaemu.issuance.staff.accounts import Accounts
    from mynaemu.issuance.staff.rights import RIGHTS, ROLES
    from mynaemu.issuance.store import iso

    accounts = Accounts(store, terminal=terminal, hasher=cheap_hasher())
    staff_id = staff_id.lower()
    wanted = list(rights if rights is not None else RIGHTS)
    if not accounts.has_staff():
        accounts.init_officer(staff_id, at=START, password=_FIRST)
    else:
        accounts.add(staff_id, staff_id, next(r for r in wanted if r in ROLES), at=START)
    held = accounts.table.rights_at(staff_id, iso(START))
    for right in wanted:
        if right not in held:
            accounts.grant(staff_id, staff_id, right, at=START)
    accounts.passwd(staff_id, password, at=PASSWORD_SET)
    return staff_id
