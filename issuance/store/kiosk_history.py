"""The kiosk's issuance history in the store (CVS-18 item 3: the municipal コンビニ交付 system keeps
an issuance history and can print it; `mynaemu issue kiosk-history`).

One table, `kiosk_history`: a row per document a municipality's 証明発行サーバ issued at a kiosk
(issuance/kiosk/municipality.py). No personal data: no name, no 個人番号, no address; the
instant, the municipality, the document, the method, the document's serial and 検証コード, the
fee, whether the 個人番号 was printed, the card it was issued against (when known) and the
kiosk that asked. `application_id` deliberately has no foreign key (neither to `applications`,
whose card may later be ended, nor to `audit`): the history outlives what it names.

Each row is written in the same transaction as its audit record (SEC-8), under the
municipality's service identity `service:municipality:<code>` (`record_kiosk_issue`), so
there is never a history row without its record in the trail, nor the other way round. The
services' worker processes each write through a connection of their own
(service_records.StoreKioskHistory).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt

from mynaemu.issuance.store.values import iso, where

TABLE = "kiosk_history"
OPERATION = "kiosk issue"          # the audit operation of an issued document


def municipality_operator(code: str) -> str:
    """The service identity a municipality's 証明発行サーバ acts under in the audit trail."""
    if not (isinstance(code, str) and len(code) == 5 and code.isascii() and code.isdigit()):
        raise ValueError(f"municipality code must be 5 digits, got {code!r}")
    return f"service:municipality:{code}"


# Schema migration (schema.py appends it; kept here as a list so renumbering is one line there).
V7 = [
    f"""CREATE TABLE {TABLE} (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        municipality_code TEXT NOT NULL CHECK (length(municipality_code) = 5),
        document TEXT NOT NULL,
        method TEXT NOT NULL,
        serial TEXT NOT NULL UNIQUE,
        verification_code TEXT NOT NULL,
        fee INTEGER NOT NULL CHECK (fee >= 0),
        with_number INTEGER NOT NULL CHECK (with_number IN (0, 1)),
        application_id TEXT,
        kiosk_id TEXT NOT NULL)""",
    f"CREATE INDEX {TABLE}_at ON {TABLE} (at, id)",
    f"CREATE INDEX {TABLE}_municipality ON {TABLE} (municipality_code, at, id)",
]

COLUMNS = ("id", "at", "recorded_at", "municipality_code", "document", "method", "serial",
           "verification_code", "fee", "with_number", "application_id", "kiosk_id")


@dataclasses.dataclass(frozen=True)
class KioskIssue:
    """One issued document as the history keeps it (no personal data)."""

    at: _dt.datetime
    municipality_code: str
    document: str
    method: str
    serial: str
    verification_code: str
    fee: int
    with_number: bool
    kiosk_id: str
    application_id: str | None = None

    def detail(self) -> dict:
        """What the audit record says of it: never a name or a number."""
        return {"document": self.document, "method": self.method, "serial": self.serial,
                "fee": self.fee, "kiosk_id": self.kiosk_id}


class KioskHistoryTable:
    """Table group `kiosk_history` (composed into Store, database.py)."""

    def record_kiosk_issue(self, issue: KioskIssue) -> int:
        """The history row and its audit record (operator `service:municipality:<code>`,
        operation `kiosk issue`, target the card when known), in one transaction: the caller's
        when one is open, else one of its own. Returns the audit record's id."""
        operator = municipality_operator(issue.municipality_code)
        if not isinstance(issue.fee, int) or isinstance(issue.fee, bool) or issue.fee < 0:
            raise ValueError("the fee must be a non-negative int")
        row = (iso(issue.at), iso(_dt.datetime.now(_dt.timezone.utc)), issue.municipality_code,
               issue.document, issue.method, issue.serial, issue.verification_code, issue.fee,
               1 if issue.with_number else 0, issue.application_id, issue.kiosk_id)
        sql = (f"INSERT INTO {TABLE} (at, recorded_at, municipality_code, document, method, serial,"
               " verification_code, fee, with_number, application_id, kiosk_id)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

        def write():
            self.conn.execute(sql, row)
            return self.audit(at=issue.at, operator=operator, terminal=issue.kiosk_id, operation=OPERATION,
                              target=issue.application_id, outcome="ok", detail=issue.detail())
        if self._in_tx:
            return write()
        with self.transaction():
            return write()

    def kiosk_history(self, *, municipality: str | None = None, since: _dt.datetime | None = None,
                      until: _dt.datetime | None = None) -> list[dict]:
        """The history in issue order: of one municipality when given, issued at or after
        `since` and before `until` (aware instants) when given."""
        clause, params = where({"municipality_code": municipality}, since=since, until=until)
        rows = self.conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE}{clause} ORDER BY at, id",
                                 tuple(params)).fetchall()
        return [{**dict(r), "with_number": bool(r["with_number"])} for r in rows]


__all__ = ["KioskHistoryTable", "KioskIssue", "V7", "TABLE", "OPERATION", "COLUMNS", "municipality_operator"]
