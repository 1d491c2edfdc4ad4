"""The audit trail's retention: kept 5 years, then purged by the security officer (SEC-8, SEC-12).

SEC-8 keeps logs for 5 years; SEC-12 has the system find what is past its retention period and
delete it, keeping a deletion history. `purge` is that deletion for the audit trail, run by the
officer (`mynaemu issue audit-purge --before DATE`, rights table row ``audit-purge``):

- ``--before DATE`` (JST midnight) may be no later than the purge's instant minus 5 calendar
  years (29 February → 28 February): asking for anything younger is refused whole, nothing is
  deleted (exit 1 at the CLI).
- A record goes only if it is old by both of its instants: its step's instant (`at`, which the
  settable clock lets a step choose) is before DATE, **and** it was written (`recorded_at`, the
  machine's clock at the time) more than 5 years before the machine's clock now. So a trail
  driven at simulated dates — steps dated 2015 run today — is still kept 5 real years.
- The purge's own instant may not be later than the machine's clock: the settable clock must not
  be a way to age records (there is no --allow-future here).
- Only a prefix of the chain goes (positions 1..k, store/audit_chain.py): the first record that
  is too young stops the purge, even if older records follow it. The purge leaves the chain's
  new anchor in the deletion history (`audit_purges`) and one audit record naming it, so
  `issue audit --verify` still proves the rest. A dry run deletes nothing; it too is on record.

Decision: the other tables keep their rows (a card's history outlives the records of the steps
that made it); their pointers to purged records are cleared.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt

from mynaemu.issuance import clock
from mynaemu.issuance.clock import JST
from mynaemu.issuance.policy import add_months

__all__ = ["RETENTION_YEARS", "RetentionRefused", "PurgeResult", "keep_from", "purge"]

RETENTION_YEARS = 5


class RetentionRefused(Exception):
    """A purge the retention rule forbids (exit 1 at the CLI); nothing was deleted."""


@dataclasses.dataclass(frozen=True)
class PurgeResult:
    records: int                 # how many records were (or, dry run, would be) deleted
    first_seq: int
    last_seq: int
    oldest_at: str | None
    newest_at: str | None
    stopped_by: dict | None      # the first record kept: {chain_seq, at, recorded_at}; None if none left
    dry_run: bool


def keep_from(instant: _dt.datetime) -> _dt.datetime:
    """The start of the retention period at `instant`: the same JST wall time 5 calendar years
    earlier (a 29 February maps to 28 February)."""
    local = instant.astimezone(JST)
    day = add_months(local.date(), -12 * RETENTION_YEARS)
    return _dt.datetime.combine(day, local.timetz())


def purge(store, *, actor: str, terminal: str, at: _dt.datetime, before: _dt.date,
          dry_run: bool = False, now: _dt.datetime | None = None) -> PurgeResult:
    """Delete the records older than `before` that the rule lets go (see the module); the deletion
    and its audit record in one transaction. RetentionRefused when `before` is within the
    retention period of `at`, or `at` is later than the machine's clock."""
    now = now or clock.utc_now()
    if at > now:
        raise RetentionRefused(f"a purge cannot be dated after this machine's clock "
                               f"({now.astimezone(JST).isoformat(timespec='seconds')}): the settable "
                               f"clock must not age the trail (SEC-8)")
    limit = keep_from(at)
    cutoff = _dt.datetime.combine(before, _dt.time(0, 0), tzinfo=JST)
    if cutoff > limit:
        raise RetentionRefused(f"SEC-8, SEC-12: audit records are kept {RETENTION_YEARS} years; on "
                               f"{at.astimezone(JST).date().isoformat()} nothing from "
                               f"{limit.date().isoformat()} on may be purged (--before "
                               f"{before.isoformat()} is too late)")
    span = store.purge_audit_prefix(at=at, operator=actor, terminal=terminal, before=cutoff,
                                    recorded_before=keep_from(now), dry_run=dry_run)
    return PurgeResult(records=span["records"], first_seq=span["first_seq"], last_seq=span["last_seq"],
                       oldest_at=span["oldest_at"], newest_at=span["newest_at"], stopped_by=span["stopped_by"],
                       dry_run=dry_run)
