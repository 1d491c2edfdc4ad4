"""`mynaemu issue audit-purge`: the security officer deletes audit records past their 5 years
(SEC-8, SEC-12; the rule is issuance/staff/retention.py). Loaded on first use by the `issue`
group (issue.py LAZY_ISSUE)."""
from __future__ import annotations

import click

from mynaemu.issuance import clock
from mynaemu.tools.cli.errors import ExitCode
from mynaemu.tools.cli.issue import ISSUE_COMMAND, common, emit, fail, guarded
from mynaemu.tools.cli.types import DATE


def _local(text: str | None) -> str:
    from mynaemu.issuance.store import parse_iso

    return parse_iso(text).astimezone(clock.JST).isoformat(timespec="seconds") if text else "-"


@click.command("audit-purge", cls=ISSUE_COMMAND)
@click.option("--before", required=True, type=DATE,
              help="Purge records dated before this day (YYYY-MM-DD, JST); at most --at minus 5 years.")
@click.option("--dry-run", is_flag=True, help="Say what would be purged; delete nothing (the read is audited).")
@click.option("--history", is_flag=True, help="Also list the earlier purges (the deletion history, SEC-12).")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_audit_purge(obj, before, dry_run, history, at, as_json, operator, terminal):
    """Delete audit records older than 5 years (SEC-8, SEC-12), oldest first.

    A record goes only if both its step's instant is before --before and it was written more
    than 5 years ago by this machine's clock; only the oldest records go, up to the first one
    that must stay. The purge keeps a deletion history and the chain's new anchor, so
    `issue audit --verify` still proves the rest. --before within the 5 years, or --at after
    this machine's clock: exit 1, nothing deleted."""
    from mynaemu.issuance.staff.retention import RetentionRefused, purge

    store = obj.open_store()
    with store:
        try:
            result = purge(store, actor=operator, terminal=terminal, at=at or clock.now(), before=before,
                           dry_run=dry_run)
        except RetentionRefused as exc:
            raise fail(str(exc), ExitCode.REFUSED) from None
        earlier = store.audit_purges() if history else None
    doc = {"records": result.records, "dry_run": result.dry_run, "first_seq": result.first_seq,
           "last_seq": result.last_seq, "oldest_at": result.oldest_at, "newest_at": result.newest_at,
           "stopped_by": result.stopped_by}
    if history:
        doc["history"] = earlier
    if as_json:
        emit(True, doc)
        return
    verb = "would purge" if dry_run else "purged"
    if result.records:
        click.echo(f"{verb} {result.records} audit records (chain positions {result.first_seq}..{result.last_seq}, "
                   f"dated {_local(result.oldest_at)} .. {_local(result.newest_at)})")
    else:
        click.echo("nothing to purge")
    kept = result.stopped_by
    if kept is not None:
        click.echo(f"kept from position {kept['chain_seq']} on: dated {_local(kept['at'])}, written "
                   f"{_local(kept['recorded_at'])}")
    for row in earlier or []:
        click.echo(f"purge {row['id']} at {_local(row['at'])} by {row['operator']}: positions "
                   f"{row['first_seq']}..{row['last_seq']} ({row['records']} records, dated "
                   f"{_local(row['oldest_at'])} .. {_local(row['newest_at'])})")
