"""`mynaemu issue status | audit | persona`: what the store says of a card as of --at, its audit
trail (SEC-8), and the pipeline personas made by the real workflow. Loaded on first use by the
`issue` group (issue.py LAZY_ISSUE).
"""
from __future__ import annotations

import click

from mynaemu.issuance import clock
from mynaemu.tools.cli.errors import ExitCode
from mynaemu.tools.cli.issue import ISSUE_COMMAND, common, emit, fail, guarded
from mynaemu.tools.cli.types import BIRTH, FORM_ID, INSTANT, OUTPUT, text_type


@click.command("status", cls=ISSUE_COMMAND)
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--reveal", is_flag=True, help="Show the full 個人番号 (the access is audited).")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_status(obj, app_id, reveal, at, as_json, operator, terminal):
    """The card and its certificates as of --at (status good, hold, revoked or expired)."""
    store, wf = obj.workflow(operator, terminal)
    with store:
        doc = wf.status(app_id, at=at or clock.now(), reveal=reveal)
    if as_json:
        emit(True, doc)
        return
    click.echo(f"{doc['id']}: {doc['state']} ({doc['state_label']}), {doc['kind']} card of {doc['holder']['name']}")
    click.echo(f"  個人番号 {doc['individual_number']}; card {doc['card_serial'] or '-'} "
               f"valid {doc['card_starts'] or '-'} .. {doc['card_expires'] or '-'}")
    for cert in doc["certificates"]:
        click.echo(f"  {cert['kind']:4s} {cert['serial']} {cert['not_before'][:10]} .. {cert['not_after'][:10]} "
                   f"{cert['status']}{' (' + cert['reason'] + ')' if cert['reason'] else ''}")


@click.command("audit", cls=ISSUE_COMMAND)
@click.argument("app_id", metavar="[ID]", required=False, type=FORM_ID)
@click.option("--verify", is_flag=True,
              help="Check the trail's hash chain: exit 0 when intact, else 1 naming the first record that "
                   "does not match (an edit, deletion or reordering in the database).")
@click.option("--since", type=INSTANT, default=None, help="Only records of steps at or after this instant.")
@click.option("--until", type=INSTANT, default=None, help="Only records of steps before this instant.")
@click.option("--by", "by", default=None, type=text_type("operator"),
              help="Only records of this staff ID or service identity (e.g. service:ocsp).")
@click.option("--outcome", type=click.Choice(["ok", "refused", "error"]), default=None, help="Only this outcome.")
@click.option("--operation", default=None, type=text_type("operation"),
              help="Only this operation (e.g. status --reveal, suspend).")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_audit(obj, app_id, verify, since, until, by, outcome, operation, at, as_json, operator, terminal):
    """The audit trail (SEC-8), all of it, for one card, or filtered for the security officer's
    review (--since/--until/--by/--outcome/--operation); --verify checks its hash chain."""
    from mynaemu.issuance.store import check_form_id

    filters = {"since": since, "until": until, "operator": by.lower() if by else None, "outcome": outcome,
               "operation": operation}
    if verify and (app_id or any(v is not None for v in filters.values())):
        raise fail("--verify checks the whole trail; it takes no ID or filter", ExitCode.USAGE)
    if since is not None and until is not None and until <= since:
        raise fail("--until must be after --since", ExitCode.USAGE)

    store, _ = obj.workflow(operator, terminal)
    when = at or clock.now()
    if verify:
        with store:
            checked, problem = store.verify_audit_chain()
            # SEC-8: reading the trail is on record too (after the check, so it checks what was there)
            store.audit(at=when, operator=operator, terminal=terminal, operation="audit", target=None, outcome="ok",
                        detail={"verify": True, "records": checked, "intact": problem is None})
        if as_json:
            emit(True, {"intact": problem is None, "records": checked, "problem": problem})
        if problem is not None:
            raise fail(f"audit trail broken after {checked} intact records: {problem}", ExitCode.REFUSED)
        if not as_json:
            click.echo(f"audit trail intact: {checked} records in one chain")
        return
    with store:
        target = None
        if app_id:
            try:
                target = check_form_id(app_id)
            except ValueError as exc:
                raise fail(str(exc), ExitCode.USAGE) from None
        rows = store.audit_rows(target, **filters)
        shown = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in filters.items() if v is not None}
        store.audit(at=when, operator=operator, terminal=terminal, operation="audit", target=target, outcome="ok",
                    detail={"records": len(rows), **({"filters": shown} if shown else {})})
    if as_json:
        emit(True, rows)
        return
    from mynaemu.issuance.validate import printable_line

    for r in rows:  # one record, one line, whatever an older store holds (SEC-8)
        click.echo(printable_line(f"{r['at']} {r['operator']}@{r['terminal']} {r['operation']} {r['target'] or '-'} "
                                  f"{r['outcome']}{': ' + r['reason'] if r['reason'] else ''}",
                                  limit=100_000, first_line_only=False))


@click.command("persona", cls=ISSUE_COMMAND)
@click.argument("name")
@click.option("-o", "--output", required=True, type=OUTPUT)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_persona(obj, name, output, force, at, as_json, operator, terminal):
    """A pipeline persona (expired, suspended, revoked-after-move, under15, guardianship,
    not-yet-valid): made by the real workflow, its revocation state left in the store."""
    from mynaemu.issuance.pipeline_personas import PIPELINE_PERSONAS, build_pipeline_persona

    if name not in PIPELINE_PERSONAS:
        from mynaemu.issuance.validate import shown

        raise click.BadParameter(f"unknown persona {shown(name)}; choose from: {', '.join(PIPELINE_PERSONAS)}",
                                 param_hint="NAME")
    if output.exists() and not force:
        raise fail(f"{output}: exists (use --force to overwrite)", ExitCode.REFUSED)
    store, wf = obj.workflow(operator, terminal)
    with store:
        result = build_pipeline_persona(wf, name, at=at or clock.now())
        result.image.save(output)
        doc = wf.status(result.id, at=at or clock.now(), audited=False)
    summary = {"persona": name, "id": result.id, "file": str(output), "state": doc["state"],
               "card_expires": doc["card_expires"], "auth_cert": doc["auth_cert"], "sign_cert": doc["sign_cert"],
               "pins": result.pins, "description": result.description}
    emit(as_json, summary, f"{output}: {name} card {result.id} ({doc['state']}); {result.description}")


@click.command("search", cls=ISSUE_COMMAND)
@click.option("--name", default=None, type=text_type("name"), help="氏名, as on the applicant's document.")
@click.option("--birth", default=None, type=BIRTH, help="生年月日, YYYY-MM-DD.")
@click.option("--address", default=None, type=text_type("address"), help="住所.")
@click.option("--sex", default=None, type=click.Choice(["1", "2", "9"]), help="1 male, 2 female, 9 n/a (narrows only).")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_search(obj, name, birth, address, sex, at, as_json, operator, terminal):
    """Residents by their 基本4情報: at least two of --name, --birth, --address (SEC-15).

    Exact matches, each with its cards; never a 個人番号. Every search is audited (who, which
    items, how many matched). Fewer than two items: exit 2, nothing searched."""
    store, wf = obj.workflow(operator, terminal)
    with store:
        found = wf.search(at=at or clock.now(), name=name, birth=birth, address=address, sex=sex)
    if as_json:
        emit(True, found)
        return
    if not found:
        click.echo("no resident matches")
    for person in found:
        cards = ", ".join(f"{c['id']} {c['state']}" for c in person["cards"]) or "no card"
        click.echo(f"{person['name']} {person['birth']} sex {person['sex']} {person['address']} "
                   f"({person['resident_status']}): {cards}")
