"""Staff accounts for tests that drive `mynaemu issue` (issue 13): every command authenticates.

``staff_account(home=None, db=None, staff_id=…, rights=None)`` puts one account holding every
role and the ``number`` right (or just `rights`; the first account of a store is always an
officer, as `issue init` makes it) into the store, through the real accounts API, and returns (ID, password):

- it starts at 1950-01-01 (the earliest --at the CLI takes), so its rights hold at every instant
  a test drives (a grant counts only for steps dated at or after it);
- its password is set (``staff passwd``) at 2049-12-31, the last instant the CLI takes: a step
  dated before the instant a password was set is never refused for age (SEC-5 as issue 13
  defines it), so no test date ages it;
- its hash is Argon2id with argon2-cffi's cheapest parameters (they are recorded in the hash, so
  verification reads them back): the real hash and check, without 0.1 s per command.
"""
from __future__ import annotations

import datetime as dt

from argon2 import PasswordHasher, profiles

JST = dt.timezone(dt.timedelta(hours=9))
START = dt.datetime(1950, 1, 1, tzinfo=JST)
PASSWORD_SET = dt.datetime(2049, 12, 31, 23, 0, tzinfo=JST)
FIRST_PASSWORD = "Office-first-passw0rd"
PASSWORD = "Office-test-passw0rd"
CHEAP = PasswordHasher.from_parameters(profiles.CHEAPEST)


def staff_account(home=None, *, db=None, staff_id: str = "op-cli", rights=None) -> tuple[str, str]:
    """An all-rights account `staff_id` in the store at `home` (or `db`); (ID, password)."""
    from mynaemu.issuance.staff.accounts import Accounts
    from mynaemu.issuance.staff.rights import RIGHTS, ROLES
    from mynaemu.issuance.store import Store, iso

    with Store.open(home, db=db) as store:
        accounts = Accounts(store, terminal="pytest", hasher=CHEAP)
        staff_id = staff_id.lower()
        if not accounts.has_staff():
            accounts.init_officer(staff_id, at=START, password=FIRST_PASSWORD)
        else:
            wanted = list(rights if rights is not None else RIGHTS)
            accounts.add(staff_id, staff_id, next(r for r in wanted if r in ROLES), at=START)
        held = accounts.table.rights_at(staff_id, iso(START))
        for right in rights if rights is not None else RIGHTS:
            if right not in held:
                accounts.grant(staff_id, staff_id, right, at=START)
        accounts.passwd(staff_id, PASSWORD, at=PASSWORD_SET)
    return staff_id, PASSWORD
