"""`mynaemu issue generate`: 鍵ペア生成 + 証明書発行 + personalisation + 交付通知書 (rules.md
FLOW-1 steps 5-8), card by card in this process or as a batch of worker processes
(issuance/lifecycle/batch.py). Loaded on first use by the `issue` group (issue.py LAZY_ISSUE).
"""
from __future__ import annotations

import sys

import click

from mynaemu.issuance import clock
from mynaemu.tools.cli.errors import ExitCode, exit_code_for, one_line
from mynaemu.tools.cli.issue import ISSUE_COMMAND, common, emit, guarded
from mynaemu.tools.cli.types import FORM_ID, SecondsType


@click.command("generate", cls=ISSUE_COMMAND)
@click.argument("app_ids", metavar="[ID]...", nargs=-1, type=FORM_ID)
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Batch mode: N worker processes claim waiting applications one at a time (PostgreSQL: "
                   "FOR UPDATE SKIP LOCKED). A killed batch is resumed by running it again: claims of dead "
                   "workers are freed, no card is generated twice.")
@click.option("--lease", type=SecondsType(1, 86400), default=None,
              help="Batch mode: seconds a claim is held before another worker may take it over "
                   "(default 120; claims of dead workers on this machine are freed at once).")
@common
@click.pass_obj
@guarded
def cmd_generate(obj, app_ids, workers, lease, at, as_json, operator, terminal):
    """鍵ペア生成 + 証明書発行 + personalisation + 交付通知書 for IDs (default: every application
    waiting). A progress bar goes to stderr; one card failing does not stop the batch (exit 1)."""
    from mynaemu.issuance.errors import WorkflowError

    if workers is not None or lease is not None:
        if app_ids:
            raise click.UsageError("--workers/--lease work on every waiting application; give no IDs")
        return _generate_batch(obj, workers or 1, lease, at or clock.now(), as_json, operator, terminal)
    store, wf = obj.workflow(operator, terminal)
    results, failures = [], []
    with store:
        ids = list(app_ids) or store.application_ids(("applied", "received"))
        with click.progressbar(ids, label="generating", file=sys.stderr, show_pos=True) as bar:
            for app_id in bar:
                try:
                    r = wf.generate(app_id, at=at or clock.now())
                except WorkflowError as exc:
                    code = exit_code_for(exc)
                    if code == ExitCode.USAGE and len(ids) == 1:
                        raise
                    failures.append({"id": app_id, "error": one_line(exc), "exit_code": int(code)})
                    continue
                results.append({"id": r.id, "notice_id": r.notice_id, "card_expires": r.card_expires.isoformat(),
                                "auth_serial": f"{r.auth_serial:X}",
                                "sign_serial": f"{r.sign_serial:X}" if r.sign_serial else None,
                                "sign": r.sign_decision})
    lines = [f"{r['id']}: notice {r['notice_id']}, card expires {r['card_expires']}, "
             f"{'auth + sign' if r['sign_serial'] else 'auth only'} ({r['sign']})" for r in results]
    emit(as_json, {"generated": results, "failed": failures}, "\n".join(lines) if lines else "nothing to generate")
    from mynaemu.issuance.validate import printable_line

    for f in failures:
        click.echo(f"mynaemu issue: {printable_line(f['id'] + ': ' + f['error'])}", err=True)
    if failures:
        codes = {f["exit_code"] for f in failures}
        raise SystemExit(codes.pop() if len(codes) == 1 and not results else int(ExitCode.REFUSED))


def _generate_batch(obj, workers, lease, at, as_json, operator, terminal):
    from mynaemu.issuance.lifecycle.batch import DEFAULT_LEASE_S, run_batch

    from mynaemu.tools.cli.progress import TerminalProgress

    store = obj.open_store()  # create / migrate before the workers open it
    try:
        waiting = len(store.application_ids(("applied", "received")))
    finally:
        store.close()
    counts = {"generated": 0, "failed": 0, "skipped": 0}
    # A bar with the total and an ETA on a terminal; nothing in a log (tools/cli/progress.py).
    with TerminalProgress(waiting, f"generating ({workers} worker{'s' if workers > 1 else ''})") as bar:
        def progress(kind, payload):
            counts[kind] += 1
            bar.set(counts["generated"] + counts["failed"])

        result = run_batch(obj.location(), workers=workers, at=at, operator=operator, terminal=terminal,
                           lease_s=lease or DEFAULT_LEASE_S, progress=progress)
    # batch.py says what went wrong with each card (a kind); its exit code is given here
    failed = [{"id": f["id"], "error": f["error"], "exit_code": int(exit_code_for(f["kind"]))} for f in result.failed]
    doc = {"generated": result.generated, "failed": failed, "skipped": result.skipped,
           "reclaimed": result.reclaimed, "workers": workers, "seconds": round(result.seconds, 3)}
    lines = [f"{r['id']}: notice {r['notice_id']}, card expires {r['card_expires']}, "
             f"{'auth + sign' if r['sign_serial'] else 'auth only'} ({r['sign']})" for r in result.generated]
    if result.reclaimed:
        lines.append(f"reclaimed {len(result.reclaimed)} claim(s) of dead workers")
    emit(as_json, doc, "\n".join(lines) if lines else "nothing to generate")
    from mynaemu.issuance.validate import printable_line

    for f in failed:
        click.echo(f"mynaemu issue: {printable_line(str(f['id']) + ': ' + str(f['error']))}", err=True)
    for line in result.worker_errors:
        click.echo(f"mynaemu issue: {printable_line(line)}", err=True)
    if failed or result.worker_errors:
        codes = {f["exit_code"] for f in failed}
        raise SystemExit(codes.pop() if len(codes) == 1 and not result.generated and not result.worker_errors
                         else int(ExitCode.REFUSED))
