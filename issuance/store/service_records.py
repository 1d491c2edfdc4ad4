"""What the kiosk's services write into the store: the municipalities' issuance history and the
centre's refusals, each in the audit trail under the service's own identity (issue 13, SEC-8).

The services run as forked worker processes (issuance/http/prefork.py) and as threads: like
StoreSpentChallenges (database.py), every call here opens its own short connection and closes it
(`with_short_store`), so a connection never crosses a fork or a thread. One write per issued
document (the history row and its audit record, one transaction) and one per refused
authentication; nothing per challenge.

The in-memory stacks of tests and benches (no store) use issuance/kiosk/records.py instead, which
has the same methods; a server built over a home or a --db always gets these (services.py).
"""
from __future__ import annotations

import datetime as _dt
import hmac

from mynaemu.issuance.store.connection import BUSY_TIMEOUT_S
from mynaemu.issuance.store.database import with_short_store
from mynaemu.issuance.store.kiosk_history import KioskIssue

CENTRE_OPERATOR = "service:centre"       # the 証明書交付センター's identity in the trail
REFUSAL_OPERATION = "kiosk authenticate"  # the audit operation of a refused kiosk request
_MAX_SERIAL = (1 << 63) - 1              # the store's serials are 63-bit


class _Short:
    def __init__(self, location, *, busy_timeout: float | None = None):
        self.location = location
        self.busy_timeout = BUSY_TIMEOUT_S if busy_timeout is None else busy_timeout

    def _with_store(self, fn):
        return with_short_store(self.location, self.busy_timeout, fn)


class StoreKioskHistory(_Short):
    """The municipalities' issuance history (CVS-18 item 3) in the store at `location` (a
    SQLite file or a postgresql:// URL). Safe from any thread and any process."""

    def record(self, issue: KioskIssue) -> None:
        """The history row and its audit record (service:municipality:<code>), one transaction."""
        self._with_store(lambda store: store.record_kiosk_issue(issue))

    def entries(self, *, municipality: str | None = None, since: _dt.datetime | None = None,
                until: _dt.datetime | None = None) -> list[dict]:
        return self._with_store(lambda store: store.kiosk_history(municipality=municipality, since=since,
                                                                  until=until))


class StoreCentreTrail(_Short):
    """The centre's refusals (SEC-8: failed access attempts are logged) in the store's audit
    trail, under `service:centre`. Safe from any thread and any process."""

    def refused(self, *, at: _dt.datetime, kiosk_id: str, reason: str, detail: dict,
                auth_serial: int | None = None, auth_der: bytes | None = None) -> None:
        """One `refused` record: terminal the kiosk, reason the refusal's code, target the card
        the store issued exactly this certificate to (serial and every byte of the DER), else none."""
        def run(store):
            target = None
            if auth_serial is not None and auth_der is not None and 0 < auth_serial <= _MAX_SERIAL:
                row = store.auth_certificate_der(auth_serial)
                if row is not None and hmac.compare_digest(bytes(row["der"]), bytes(auth_der)):
                    target = row["application_id"]
            store.audit(at=at, operator=CENTRE_OPERATOR, terminal=kiosk_id, operation=REFUSAL_OPERATION,
                        target=target, outcome="refused", reason=reason, detail=detail)
        self._with_store(run)


__all__ = ["StoreKioskHistory", "StoreCentreTrail", "CENTRE_OPERATOR", "REFUSAL_OPERATION"]
