"""Staff accounts for tests that drive `mynaemu issue` (issue 13): every command authenticates.

``staff_account(home=None, db=None, staff_id=…, rights=None)`` opens the store and makes an
account with every role and the ``number`` right (or just `rights`) through
mynaemu.tools.harness.staff (valid at every test date, cheap Argon2id: see there); it returns
(ID, password)."""
from __future__ import annotations

from mynaemu.tools.harness.staff import cheap_hasher

PASSWORD = "Office-test-passw0rd"
CHEAP = cheap_hasher()


def staff_account(home=None, *, db=None, staff_id: str = "op-cli", rights=None) -> tuple[str, str]:
    from mynaemu.issuance.store import Store
    from mynaemu.tools.harness.staff import all_rights_account

    with Store.open(home, db=db) as store:
        return all_rights_account(store, staff_id, PASSWORD, rights=rights), PASSWORD
