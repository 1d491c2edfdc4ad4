"""The store as one object: the connection and every table group; and the per-call views the
services' threads and worker processes use (revocation answers, spent challenges)."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from mynaemu.issuance.store import postgres as pg
from mynaemu.issuance.store.audit import AuditTable
from mynaemu.issuance.store.cards import CardsTable
from mynaemu.issuance.store.certificates import CertificatesTable
from mynaemu.issuance.store.challenges import ChallengesTable
from mynaemu.issuance.store.claims import ClaimsTable
from mynaemu.issuance.store.connection import BUSY_TIMEOUT_S, Connection
from mynaemu.issuance.store.custody import CustodyTable
from mynaemu.issuance.store.errors import StoreError
from mynaemu.issuance.store.kiosk_history import KioskHistoryTable
from mynaemu.issuance.store.persons import PersonsTable


class Store(AuditTable, PersonsTable, CardsTable, ClaimsTable, CustodyTable, CertificatesTable, ChallengesTable,
            KioskHistoryTable, Connection):
    """The store over SQLite or PostgreSQL (Connection) with its table groups: one object per thread.

    Use as a context manager or call close(). ``Store(location)``: a file path (SQLite) or a
    ``postgresql://`` URL; ``Store.open(home)`` creates ``home`` and the database when missing.
    Each table group (audit.py, persons.py, cards.py, claims.py, custody.py, certificates.py,
    kiosk_history.py)
    holds the SQL of its tables; nothing outside this package runs SQL."""


def with_short_store(location, busy_timeout: float, fn):
    """fn(store) on a connection of its own, closed after: how the services' threads and worker
    processes read and write the store (a connection never crosses a thread or a fork)."""
    store = Store(location, busy_timeout=busy_timeout, migrate=False)
    try:
        return fn(store)
    finally:
        store.close()


class StoreRevocationSource:
    """A thread-safe RevocationSource over the store file or PostgreSQL URL, for the OCSP/CRL
    server threads: each question opens its own short read connection (connections are per
    thread)."""

    def __init__(self, path, *, busy_timeout: float = BUSY_TIMEOUT_S):
        self.busy_timeout = busy_timeout
        if pg.is_url(path):
            self.path = path
            return
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no store here")

    def _with_store(self, fn):
        return with_short_store(self.path, self.busy_timeout, fn)

    def certificate_status(self, ca_kind: str, serial: int, at: _dt.datetime):
        return self._with_store(lambda s: s.certificate_status(ca_kind, serial, at))

    def revoked_certificates(self, ca_kind: str, at: _dt.datetime):
        return self._with_store(lambda s: s.revoked_certificates(ca_kind, at))


class StoreSpentChallenges:
    """The spent-set over the store at `location` (a SQLite file or a postgresql:// URL), for
    issuance/kiosk/challenges.py. Safe from any thread and any process (a connection per call)."""

    def __init__(self, location, *, busy_timeout: float | None = None):
        self.location = location
        self.busy_timeout = busy_timeout

    def _with_store(self, fn):
        return with_short_store(self.location, self.busy_timeout if self.busy_timeout is not None else BUSY_TIMEOUT_S,
                                fn)

    def spend(self, token: bytes, expires: _dt.datetime, now: _dt.datetime) -> bool:
        return self._with_store(lambda store: store.spend_challenge(token, expires, now))

    def count(self) -> int:
        return self._with_store(lambda store: store.spent_challenge_count())

