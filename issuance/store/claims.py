"""Batch claims on waiting cards: leases kept in the store, freed when their worker dies (batch.py)."""
from __future__ import annotations

import datetime as _dt
import os
import secrets
from pathlib import Path

from mynaemu.issuance.store.values import CARD_STATES, QUEUE_STATES


class ClaimsTable:
    """The claim columns of `cards` (claim_owner, claim_until): what batch workers lease."""

    # --- batch claims (batch.py) -------------------------------------------------------------
    def claim_next(self, owner: str, *, lease_s: float, batch_started: str,
                   states: tuple = QUEUE_STATES) -> str | None:
        """Claim the oldest waiting card nobody holds and return its id (None: nothing left).

        A card is free when it has no claim, when its lease ran out, or when it was refused in an
        earlier batch (claim_owner "refused", claim_until = when; ``batch_started`` is this
        batch's start, so a card refused in this batch is not tried again by it). PostgreSQL
        skips rows another worker is claiming right now (FOR UPDATE SKIP LOCKED) instead of
        waiting for them; SQLite has one writer at a time anyway.
        """
        if not states or set(states) - set(CARD_STATES):
            raise ValueError(f"claimable states must be card states, got {states!r}")
        now = _dt.datetime.now(_dt.timezone.utc)
        until = lease_stamp(now + _dt.timedelta(seconds=lease_s))
        marks = ", ".join("?" for _ in states)
        sql = (f"SELECT application_id FROM cards WHERE state IN ({marks}) AND (claim_owner IS NULL "
               "OR (claim_owner = 'refused' AND claim_until < ?) "
               "OR (claim_owner <> 'refused' AND claim_until < ?)) ORDER BY seq LIMIT 1")
        if self.is_pg:
            sql += " FOR UPDATE SKIP LOCKED"
        with self.transaction() as conn:
            row = conn.execute(sql, (*states, batch_started, lease_stamp(now))).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE cards SET claim_owner = ?, claim_until = ? WHERE application_id = ?",
                         (owner, until, row[0]))
        return row[0]

    def mark_refused(self, app_id: str, owner: str) -> None:
        """Leave a card this batch could not generate to the next batch (see claim_next)."""
        with self.transaction() as conn:
            conn.execute("UPDATE cards SET claim_owner = 'refused', claim_until = ? "
                         "WHERE application_id = ? AND claim_owner = ?",
                         (lease_stamp(), app_id, owner))

    def clear_claim(self, app_id: str) -> None:
        """Inside the transaction that finishes the card (generate)."""
        self.conn.execute("UPDATE cards SET claim_owner = NULL, claim_until = NULL WHERE application_id = ?",
                          (app_id,))

    def claims(self) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT application_id, state, claim_owner, claim_until FROM cards "
            "WHERE claim_owner IS NOT NULL ORDER BY seq")]

    def release_dead_claims(self) -> list[str]:
        """Free at once the claims of workers of this machine that no longer run (their lease
        would free them later anyway). Returns the ids freed."""
        host = _machine_id()
        dead = {}
        for row in self.claims():
            owner = row["claim_owner"]
            parts = owner.split("/")
            if row["state"] not in QUEUE_STATES or len(parts) != 3 or parts[0] != host:
                continue
            if not _pid_alive(int(parts[1])):
                dead[row["application_id"]] = owner
        if dead:
            with self.transaction() as conn:
                for app_id, owner in dead.items():
                    conn.execute("UPDATE cards SET claim_owner = NULL, claim_until = NULL "
                                 "WHERE application_id = ? AND claim_owner = ?", (app_id, owner))
        return sorted(dead)


def lease_stamp(instant: _dt.datetime | None = None) -> str:
    """Wall-clock time of a claim, to the microsecond, in one fixed sortable form (leases run on
    the real clock, never on the workflow's settable one; two batches a second apart must order)."""
    instant = instant or _dt.datetime.now(_dt.timezone.utc)
    return instant.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim_owner_id(token: str | None = None) -> str:
    """A batch worker's claim owner: machine/pid/token (the pid lets release_dead_claims free
    the claims of a killed worker at once; the token tells two lives of one pid apart)."""
    return f"{_machine_id()}/{os.getpid()}/{token or secrets.token_hex(4)}"


def _machine_id() -> str:
    # the boot id changes with every boot, so a pid is only compared within one boot of one host
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "noboot"
    import socket

    return f"{socket.gethostname()}-{boot}".replace("/", "_")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped by its parent) runs no more code
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
