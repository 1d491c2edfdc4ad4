"""What the kiosk's services record, kept in memory: for stacks built without a store.

A municipality keeps its issuance history (CVS-18 item 3) and the centre records its refusals
(SEC-8) through an object with the methods below. A stack over a home or a --db
(services.services_from_home, `kiosk serve --workers N`, the demo, the bench over a store) gets
the store's (issuance/store/service_records.py: StoreKioskHistory, StoreCentreTrail), which
survive a restart and are shared by every worker process. The classes here are for in-process
stacks that pass an in-memory ResidentDirectory (tests, the P4 bench): they are chosen
explicitly by whoever builds such a stack, never as a fallback, and what they hold is lost when
the process ends.
"""
from __future__ import annotations

import datetime as _dt
import threading

from mynaemu.issuance.store.kiosk_history import KioskIssue


class MemoryKioskHistory:
    """The issuance history in this process's memory (same methods as StoreKioskHistory)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: list[KioskIssue] = []

    def record(self, issue: KioskIssue) -> None:
        with self._lock:
            self._entries.append(issue)

    def entries(self, *, municipality: str | None = None, since: _dt.datetime | None = None,
                until: _dt.datetime | None = None) -> list[dict]:
        with self._lock:
            issues = list(self._entries)
        return [{"at": i.at.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat(),
                 "municipality_code": i.municipality_code, "document": i.document, "method": i.method,
                 "serial": i.serial, "verification_code": i.verification_code, "fee": i.fee,
                 "with_number": i.with_number, "application_id": i.application_id, "kiosk_id": i.kiosk_id}
                for i in issues
                if (municipality is None or i.municipality_code == municipality)
                and (since is None or i.at >= since) and (until is None or i.at < until)]


class MemoryCentreTrail:
    """The centre's refusals in this process's memory (same method as StoreCentreTrail)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.records: list[dict] = []

    def refused(self, *, at: _dt.datetime, kiosk_id: str, reason: str, detail: dict,
                auth_serial: int | None = None, auth_der: bytes | None = None) -> None:
        with self._lock:
            self.records.append({"at": at, "terminal": kiosk_id, "reason": reason, "detail": dict(detail)})


__all__ = ["MemoryKioskHistory", "MemoryCentreTrail"]
