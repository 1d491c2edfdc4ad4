"""The store's audit trail (SEC-8): who did what, when, from which terminal, with what outcome."""
from __future__ import annotations

import datetime as _dt
import json

from mynaemu.issuance import clock
from mynaemu.issuance.store import audit_chain
from mynaemu.issuance.store.values import iso, scrub, where


# what `issue audit` shows of a record (the chain columns are for `issue audit --verify`)
_SHOWN = ", ".join(audit_chain.FIELDS)


class AuditTable:
    """Table group `audit`. Every text passes scrub(): no 個人番号 lands in the trail."""

    # --- audit (SEC-8) ----------------------------------------------------------------------
    def audit(self, *, at: _dt.datetime, operator: str, terminal: str, operation: str,
              target: str | None, outcome: str, reason: str | None = None,
              detail: dict | None = None) -> int:
        """Append an audit record (inside the caller's transaction, or in one of its own)."""
        if outcome not in ("ok", "refused", "error"):
            raise ValueError(f"bad audit outcome {outcome!r}")
        for what, value in (("operator", operator), ("terminal", terminal)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"the audit needs a non-empty {what} id (SEC-4, SEC-8)")
        row = (iso(at), iso(clock.utc_now()), scrub(operator), scrub(terminal),
               operation, scrub(target), scrub(reason), outcome,
               scrub(json.dumps(detail, ensure_ascii=False, sort_keys=True)) if detail else None)
        sql = ("INSERT INTO audit (at, recorded_at, operator, terminal, operation, target, reason,"
               " outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        if self._in_tx:
            return self.conn.execute(sql, row).lastrowid
        with self.transaction() as conn:
            return conn.execute(sql, row).lastrowid

    def audit_rows(self, target: str | None = None, *, since: _dt.datetime | None = None,
                   until: _dt.datetime | None = None, operator: str | None = None, outcome: str | None = None,
                   operation: str | None = None) -> list[dict]:
        """The records, oldest first: all, or those matching every filter given (the officer's
        monthly review, SEC-8): target, step instant in [since, until), operator, outcome, operation."""
        clause, params = where({"target": target, "operator": operator, "outcome": outcome, "operation": operation},
                               since=since, until=until)
        sql = f"SELECT {_SHOWN} FROM audit{clause} ORDER BY id"
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def set_audit_detail(self, audit_id: int, detail: dict) -> None:
        """Attach the step's details to its audit record (inside the step's transaction)."""
        self.conn.execute("UPDATE audit SET detail = ? WHERE id = ?",
                          (scrub(json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)), audit_id))

    def set_audit_target(self, audit_id: int, target: str) -> None:
        """Name the card a step turned out to act on (a new application's id is known only inside it)."""
        self.conn.execute("UPDATE audit SET target = ? WHERE id = ?", (target, audit_id))

    # --- the chain (audit_chain.py) -----------------------------------------------------------
    def _before_commit(self) -> None:
        # a store whose schema predates the chain (inside its own migration) has nothing to seal yet
        if self.schema_version() >= audit_chain.SCHEMA:
            audit_chain.seal(self.conn, lambda: self.lock_name(audit_chain.CHAIN_LOCK))
        super()._before_commit()

    # --- retention (audit_chain.purge_prefix; the rule is issuance/staff/retention.py) ----------
    def purge_audit_prefix(self, *, at: _dt.datetime, operator: str, terminal: str, before: _dt.datetime,
                           recorded_before: _dt.datetime, dry_run: bool = False) -> dict:
        """Delete the longest prefix of the chain whose records all have `at` < before and
        `recorded_at` < recorded_before, in one transaction with the purge's own audit record
        (operation ``audit-purge``, naming the span and the new anchor); returns the span
        (audit_chain.purgeable). dry_run: nothing is deleted, the read is recorded."""
        with self.transaction() as conn:
            self.lock_name(audit_chain.CHAIN_LOCK)   # PostgreSQL; SQLite's BEGIN IMMEDIATE excludes every writer
            span = audit_chain.purgeable(conn, before=iso(before), recorded_before=iso(recorded_before))
            detail = {k: span[k] for k in ("first_seq", "last_seq", "records", "oldest_at", "newest_at", "last_hash")}
            detail["last_hash"] = audit_chain.hash_text(span["last_hash"])
            detail.update(before=iso(before), recorded_before=iso(recorded_before), dry_run=dry_run)
            audit_id = self.audit(at=at, operator=operator, terminal=terminal, operation="audit-purge", target=None,
                                  outcome="ok", detail=detail)
            if span["records"] and not dry_run:
                audit_chain.purge_prefix(conn, span, at=iso(at), recorded_at=iso(clock.utc_now()),
                                         operator=operator, before=iso(before), audit_id=audit_id)
        return span

    def audit_purges(self) -> list[dict]:
        """The deletion history of the trail (SEC-12), oldest first."""
        return audit_chain.purges(self.conn)

    def verify_audit_chain(self) -> tuple[int, str | None]:
        """(records checked, None) when the trail is intact, else the first record that is not."""
        return audit_chain.verify_chain(self.conn)
