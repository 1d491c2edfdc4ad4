"""The demo's own staff (issue 13: `mynaemu demo` runs with no set-up): a security officer who
makes one account per duty, and a login that runs each step through the same authorisation as
the `issue` commands (authorise.py), so the demo's audit names who did what."""
from __future__ import annotations

import datetime as _dt

from mynaemu.issuance.staff.accounts import Accounts
from mynaemu.issuance.staff.authorise import authorise
from mynaemu.issuance.staff.rights import decide

__all__ = ["DemoStaff"]

OFFICER = "demo-officer"
ACCOUNTS = {"demo-counter": "counter", "demo-issuer": "issuer", "demo-callcentre": "callcentre"}


class DemoStaff:
    def __init__(self, store, *, at: _dt.datetime, terminal: str = "demo"):
        accounts = Accounts(store, terminal=terminal)
        self.terminal = terminal
        self.passwords = {OFFICER: accounts.init_officer(OFFICER, at=at)}
        for staff_id, role in ACCOUNTS.items():
            self.passwords[staff_id] = accounts.add(OFFICER, staff_id, role, at=at)

    def login(self, store, operation: str, at: _dt.datetime) -> str:
        """The ID of the demo account whose duty `operation` is, authenticated and authorised at `at`."""
        staff_id = next((s for s, role in ACCOUNTS.items() if decide(operation, {role}).allowed), None)
        if staff_id is None:
            raise ValueError(f"no demo account has the duty {operation!r}")
        return authorise(store, operator=staff_id, password=self.passwords[staff_id], operation=operation, at=at,
                         terminal=self.terminal)
