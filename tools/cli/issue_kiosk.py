"""`mynaemu issue kiosk-history`: the kiosk's issuance history as the store keeps it (CVS-18 item 3:
the municipal コンビニ交付 system keeps an issuance history and can print it). Loaded on first use
by the `issue` group (issue.py LAZY_ISSUE).

What it prints holds no personal data (issuance/store/kiosk_history.py): the instant (JST), the
municipality, the document and method, the document's serial and 検証コード, the fee, whether the
個人番号 was printed, the card (application id) it was issued against and the kiosk. Rights:
the officer and the counter (issuance/staff/rights.py), the municipal staff who answer for the
documents issued. Reading it is on record like every read (SEC-8): one audit record naming who,
the terminal, the filters and how many documents were shown.
"""
from __future__ import annotations

import datetime as _dt

import click

from mynaemu.issuance import clock
from mynaemu.issuance.clock import JST
from mynaemu.tools.cli.errors import ExitCode
from mynaemu.tools.cli.issue import ISSUE_COMMAND, common, emit, fail, guarded
from mynaemu.tools.cli.types import DATE


def _municipality_code(ctx, param, value):
    if value is None:
        return None
    if not (len(value) == 5 and value.isascii() and value.isdigit()):
        raise click.BadParameter("a municipality code is 5 digits (全国地方公共団体コード), e.g. 13221",
                                 ctx=ctx, param=param)
    return value


def _start_of(day: _dt.date) -> _dt.datetime:
    """00:00 JST of `day`: the history's days are the municipality's (JST) days."""
    return _dt.datetime.combine(day, _dt.time(0, 0), JST)


@click.command("kiosk-history", cls=ISSUE_COMMAND)
@click.option("--municipality", "municipality", default=None, metavar="CODE", callback=_municipality_code,
              help="Only this municipality's documents (5-digit code).")
@click.option("--from", "date_from", type=DATE, default=None, help="From this day (JST), inclusive.")
@click.option("--to", "date_to", type=DATE, default=None, help="To this day (JST), inclusive.")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_kiosk_history(obj, municipality, date_from, date_to, at, as_json, operator, terminal):
    """The documents issued at kiosks (コンビニ交付, CVS-18 item 3), oldest first: no name, no 個人番号."""
    if date_from is not None and date_to is not None and date_from > date_to:
        raise fail(f"--from {date_from.isoformat()} is after --to {date_to.isoformat()}", ExitCode.USAGE)
    since = _start_of(date_from) if date_from is not None else None
    until = _start_of(date_to + _dt.timedelta(days=1)) if date_to is not None else None
    store = obj.open_store()
    with store:
        rows = store.kiosk_history(municipality=municipality, since=since, until=until)
        store.audit(at=at or clock.now(), operator=operator, terminal=terminal, operation="kiosk-history",
                    target=None, outcome="ok",
                    detail={"municipality": municipality, "records": len(rows),
                            "from": date_from.isoformat() if date_from else None,
                            "to": date_to.isoformat() if date_to else None})
    for row in rows:
        row["at"] = _dt.datetime.fromisoformat(row["at"]).astimezone(JST).isoformat()
    if as_json:
        emit(True, rows)
        return
    from mynaemu.issuance.validate import printable_line

    if not rows:
        click.echo("no document was issued at a kiosk in this range")
    for r in rows:   # one document, one line
        click.echo(printable_line(
            f"{r['at']} {r['municipality_code']} {r['document']} {r['method']} serial {r['serial']} "
            f"検証コード {r['verification_code']} ¥{r['fee']}{' 個人番号あり' if r['with_number'] else ''} "
            f"card {r['application_id'] or '-'} kiosk {r['kiosk_id']}", limit=1000))
