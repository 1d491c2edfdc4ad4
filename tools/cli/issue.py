"""`mynaemu issue …`: the TEST back office on the command line (store + workflow + CRL/OCSP).

Every command works on the store under --home / MYNAEMU_HOME (default: the user's data
directory), or on PostgreSQL with --db URL / MYNAEMU_DB (postgresql://…; the same schema), takes --at (the settable clock; ISO 8601 date or datetime, naive = JST, default now),
--operator / --terminal for the audit (SEC-8; defaults MYNAEMU_OPERATOR / MYNAEMU_TERMINAL or
"cli") and --json. Errors are one line on stderr; exit codes are in the group's help.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
import signal
import sys
import threading
from pathlib import Path

import click

JST = _dt.timezone(_dt.timedelta(hours=9), "JST")

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_BUSY = 4


class IssueError(click.ClickException):
    """A one-line error with the exit code of the group's table."""

    def __init__(self, message: str, code: int = EXIT_REFUSED):
        super().__init__(message)
        self.exit_code = code

    def show(self, file=None):
        from mynaemu.issuance.validate import printable_line

        click.echo(f"mynaemu issue: {printable_line(self.format_message())}", err=True)


# ---------------------------------------------------------------------------------------------
# parameter types
# ---------------------------------------------------------------------------------------------

# InstantType / DateType and the other checked types live in cli_types (docs/input-limits.md).
from mynaemu.tools.cli.types import (
    BIRTH, DATE, FLAGS, FORM_ID, INSTANT, OUTPUT, DateType, InstantType, SecondsType, text_type,
)


def _now() -> _dt.datetime:
    return _dt.datetime.now(JST).replace(microsecond=0)


# ---------------------------------------------------------------------------------------------
# shared options and error mapping
# ---------------------------------------------------------------------------------------------

# A state-changing step dated further than this after the machine's clock needs --allow-future.
FUTURE_SLACK = _dt.timedelta(days=1)


def check_future(at, allow_future: bool, *, now: _dt.datetime | None = None) -> None:
    """Refuse (exit 2) a state-changing --at more than FUTURE_SLACK after the machine's clock.

    The settable clock lets tests and demos live on any date, but a mistyped year (2030 for
    2026) would otherwise stick: history never goes back (the clock check of workflow.py), so a
    suspension dated 2030 could not be resumed today and a 受付 dated 2099 would block the
    person for good. Reads (status, audit, crl, persona, ocsp-serve) stay free at any instant."""
    if at is None or allow_future:
        return
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if at - now > FUTURE_SLACK:
        raise IssueError(f"--at {at.isoformat()} is more than one day after this machine's clock "
                         f"({now.astimezone(JST).isoformat(timespec='seconds')}); a state-changing step "
                         "dated in the future needs --allow-future", EXIT_USAGE)


def common(func=None, *, reads: bool = False):
    """--at, --json, --operator, --terminal on every command; --allow-future (and the check of
    check_future) on every command that changes the store (`reads=True`: the read commands)."""
    if func is None:
        return functools.partial(common, reads=reads)
    if not reads:
        inner = func

        @functools.wraps(inner)
        def func(*args, allow_future=False, **kwargs):
            check_future(kwargs.get("at"), allow_future)
            return inner(*args, **kwargs)

        func = click.option("--allow-future", "allow_future", is_flag=True,
                            help="Allow --at more than one day after this machine's clock "
                                 "(a state-changing step dated in the future).")(func)
    func = click.option("--terminal", envvar="MYNAEMU_TERMINAL", default="cli", show_default=True,
                        type=text_type("terminal"),
                        help="Terminal id for the audit (DATA-3 操作端末ID).")(func)
    func = click.option("--operator", envvar="MYNAEMU_OPERATOR", default="cli", show_default=True,
                        type=text_type("operator"),
                        help="Operator id for the audit (SEC-4, DATA-3 操作者ID).")(func)
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option("--at", "at", type=INSTANT, default=None,
                        help="The instant of the operation (ISO 8601; naive = JST; default now).")(func)
    return func


def guarded(func):
    """Map the back office's exceptions to one-line messages and the documented exit codes."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from mynaemu.card.image import CardImageError
        from mynaemu.issuance.store import StoreBusy, StoreError
        from mynaemu.issuance.validate import InputError
        from mynaemu.issuance.lifecycle.workflow import WorkflowError

        try:
            return func(*args, **kwargs)
        except WorkflowError as exc:
            raise IssueError(_one_line(exc), exc.exit_code) from None
        except InputError as exc:  # the domain's input rules (validate.py): bad arguments
            raise IssueError(_one_line(exc), EXIT_USAGE) from None
        except StoreBusy as exc:
            raise IssueError(_one_line(exc), EXIT_BUSY) from None
        except (StoreError, CardImageError, OSError) as exc:
            raise IssueError(_one_line(exc), EXIT_REFUSED) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 — the workflow audited it; one line, no traceback
            raise unexpected_error(exc, "mynaemu issue") from exc

    return wrapper


def unexpected_error(exc: Exception, prog: str) -> click.ClickException:
    """An exception nobody expected, as one line and exit 1; MYNAEMU_DEBUG=1 keeps the traceback."""
    import os

    if os.environ.get("MYNAEMU_DEBUG"):
        raise exc
    # only the class: the text of an unexpected error may hold a PIN or a 個人番号
    return IssueError(f"internal error ({type(exc).__name__}) in this step; it was audited, nothing was "
                      f"changed (MYNAEMU_DEBUG=1 shows the traceback)", EXIT_REFUSED)


def _one_line(exc) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class _Context:
    def __init__(self, home, db=None):
        self.home = home
        self.db = db

    def open_store(self):
        from mynaemu.issuance.store import Store

        return Store.open(self.home, db=self.db)

    def location(self):
        """What worker processes and server threads open: the URL, else the SQLite file."""
        from mynaemu.issuance.store import DB_NAME, default_home

        return self.db if self.db else (self.home or default_home()) / DB_NAME

    def workflow(self, operator: str, terminal: str):
        from mynaemu.issuance.lifecycle.workflow import Workflow

        store = self.open_store()
        return store, Workflow(store, operator=operator, terminal=terminal)


def _emit(as_json: bool, doc, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=1, default=str))
    elif text is not None:
        click.echo(text)


def _load_card(path: Path):
    """The card image at `path`, held (locked) until the command ends, so that no door spends a
    PIN try between this read and _save_card's write, which would undo it (card/image.py)."""
    from mynaemu.card.image import CardSession

    session = CardSession(path, door="mynaemu issue (back office)")
    ctx = click.get_current_context()
    ctx.call_on_close(session.close)
    ctx.meta.setdefault("mynaemu.card_sessions", {})[str(path)] = session
    return session.image


def _save_card(image, path: Path) -> None:
    """Write `image` to `path` under the hold _load_card took (or a brief one for a new file)."""
    session = click.get_current_context().meta.get("mynaemu.card_sessions", {}).get(str(path))
    if session is not None:
        session.save(image)
    else:
        image.save(path)


# ---------------------------------------------------------------------------------------------
# the group
# ---------------------------------------------------------------------------------------------

def _usage_line(ctx_name: str, exc: click.UsageError) -> IssueError:
    return IssueError(f"{ctx_name}: {exc.format_message()}", EXIT_USAGE)


class IssueCommand(click.Command):
    """Bad arguments become one line on stderr with exit code 2 (click would print three)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _usage_line(info_name or self.name, exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_line(ctx.info_name or self.name, exc) from None


class IssueGroup(click.Group):
    command_class = IssueCommand

    def make_context(self, info_name, args, parent=None, **extra):
        try:  # the group's own options (--home, --db): one line too
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # no arguments at all: the help, as before
        except click.UsageError as exc:
            raise IssueError(exc.format_message(), EXIT_USAGE) from None

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise IssueError(exc.format_message(), EXIT_USAGE) from None


@click.group("issue", cls=IssueGroup)
@click.option("--home", envvar="MYNAEMU_HOME", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Store directory (default: $MYNAEMU_HOME, else the user's data directory).")
@click.option("--db", envvar="MYNAEMU_DB", default=None, metavar="URL",
              help="PostgreSQL instead of the SQLite file: postgresql://user:password@host:port/dbname "
                   "(default: $MYNAEMU_DB; needs the pg extra, psycopg 3).")
@click.pass_context
def issue(ctx, home, db):
    """The TEST issuance back office: 申請 → 受付 → 鍵ペア生成/証明書発行 → 交付 → 一時停止/解除,
    異動, 更新, 再発行, 廃止/回収/廃棄, 失効, with CRLs and an OCSP responder from the store.

    \b
    Exit codes:
      0  success
      1  refused: a rule or the card's current state forbids the step (the message names the
         rule id, e.g. VAL-7, or the state); nothing was changed
         — or an internal error (audited; MYNAEMU_DEBUG=1 shows the traceback)
      2  bad usage or bad arguments (impossible dates, malformed ids, bad PIN formats, text
         outside docs/input-limits.md)
      3  unknown application id
      4  the store stayed locked by another process beyond the busy timeout; try again
    """
    from mynaemu.issuance.store.postgres import is_url

    if db is not None and not is_url(db):
        from mynaemu.issuance.validate import shown

        raise IssueError(f"--db must be a postgresql:// URL, got {shown(db.split(':', 1)[0], 20)}...", EXIT_USAGE)
    ctx.obj = _Context(home, db or None)


@issue.command("apply")
@click.option("--name", required=True, type=text_type("name"),
              help="氏名 (family and given name separated by U+3000).")
@click.option("--birth", required=True, type=BIRTH, help="生年月日, YYYY-MM-DD (明治 1868-01-25 or later).")
@click.option("--sex", required=True, type=click.Choice(["1", "2", "9"]), help="1 male, 2 female, 9 n/a (JIS X 0303).")
@click.option("--address", required=True, type=text_type("address"), help="住所.")
@click.option("--guardianship", is_flag=True, help="成年被後見人: no signing certificate (ELIG-2).")
@click.option("--decline-sign-cert", is_flag=True, help="署名用電子証明書 不要 ticked on the form (M9).")
@click.option("--name-kana", default="", type=text_type("name_kana", optional=True), help="ふりがな.")
@click.option("--name-alt", default=None, type=FLAGS, help="代替文字 flags of the name, one 0/1 per character.")
@click.option("--address-alt", default=None, type=FLAGS,
              help="代替文字 flags of the address, one 0/1 per character.")
@click.option("--alt-unconfirmed", is_flag=True, help="The form came back without the 代替文字 check (FLOW-3).")
@common
@click.pass_obj
@guarded
def cmd_apply(obj, name, birth, sex, address, guardianship, decline_sign_cert, name_kana, name_alt,
              address_alt, alt_unconfirmed, at, as_json, operator, terminal):
    """申請: register a returned application form; prints the application id (FLOW-3/FLOW-4)."""
    store, wf = obj.workflow(operator, terminal)
    with store:
        app_id = wf.apply(name=name, birth=birth, sex=sex, address=address, at=at or _now(),
                          guardianship=guardianship, decline_sign=decline_sign_cert, name_kana=name_kana,
                          name_alt=name_alt, address_alt=address_alt, alt_confirmed=not alt_unconfirmed)
    _emit(as_json, {"id": app_id}, app_id)


@issue.command("receive")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@common
@click.pass_obj
@guarded
def cmd_receive(obj, app_id, at, as_json, operator, terminal):
    """受付: register the application (generate does this too when needed)."""
    store, wf = obj.workflow(operator, terminal)
    with store:
        wf.receive(app_id, at=at or _now())
        doc = wf.status(app_id, at=at or _now())
    _emit(as_json, {"id": doc["id"], "state": doc["state"]}, f"{doc['id']}: {doc['state']}")


@issue.command("generate")
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
    from mynaemu.issuance.lifecycle.workflow import WorkflowError

    if workers is not None or lease is not None:
        if app_ids:
            raise click.UsageError("--workers/--lease work on every waiting application; give no IDs")
        return _generate_batch(obj, workers or 1, lease, at or _now(), as_json, operator, terminal)
    store, wf = obj.workflow(operator, terminal)
    results, failures = [], []
    with store:
        ids = list(app_ids) or store.application_ids(("applied", "received"))
        with click.progressbar(ids, label="generating", file=sys.stderr, show_pos=True) as bar:
            for app_id in bar:
                try:
                    r = wf.generate(app_id, at=at or _now())
                except WorkflowError as exc:
                    if exc.exit_code == EXIT_USAGE and len(ids) == 1:
                        raise
                    failures.append({"id": app_id, "error": _one_line(exc), "exit_code": exc.exit_code})
                    continue
                results.append({"id": r.id, "notice_id": r.notice_id, "card_expires": r.card_expires.isoformat(),
                                "auth_serial": f"{r.auth_serial:X}",
                                "sign_serial": f"{r.sign_serial:X}" if r.sign_serial else None,
                                "sign": r.sign_decision})
    lines = [f"{r['id']}: notice {r['notice_id']}, card expires {r['card_expires']}, "
             f"{'auth + sign' if r['sign_serial'] else 'auth only'} ({r['sign']})" for r in results]
    _emit(as_json, {"generated": results, "failed": failures}, "\n".join(lines) if lines else "nothing to generate")
    from mynaemu.issuance.validate import printable_line

    for f in failures:
        click.echo(f"mynaemu issue: {printable_line(f['id'] + ': ' + f['error'])}", err=True)
    if failures:
        codes = {f["exit_code"] for f in failures}
        raise SystemExit(codes.pop() if len(codes) == 1 and not results else EXIT_REFUSED)


def _generate_batch(obj, workers, lease, at, as_json, operator, terminal):
    from mynaemu.issuance.lifecycle.batch import DEFAULT_LEASE_S, run_batch

    from mynaemu.tools.progress import TerminalProgress

    store = obj.open_store()  # create / migrate before the workers open it
    try:
        waiting = len(store.application_ids(("applied", "received")))
    finally:
        store.close()
    counts = {"generated": 0, "failed": 0, "skipped": 0}
    # A bar with the total and an ETA on a terminal; nothing in a log (tools/progress.py).
    with TerminalProgress(waiting, f"generating ({workers} worker{'s' if workers > 1 else ''})") as bar:
        def progress(kind, payload):
            counts[kind] += 1
            bar.set(counts["generated"] + counts["failed"])

        result = run_batch(obj.location(), workers=workers, at=at, operator=operator, terminal=terminal,
                           lease_s=lease or DEFAULT_LEASE_S, progress=progress)
    doc = {"generated": result.generated, "failed": result.failed, "skipped": result.skipped,
           "reclaimed": result.reclaimed, "workers": workers, "seconds": round(result.seconds, 3)}
    lines = [f"{r['id']}: notice {r['notice_id']}, card expires {r['card_expires']}, "
             f"{'auth + sign' if r['sign_serial'] else 'auth only'} ({r['sign']})" for r in result.generated]
    if result.reclaimed:
        lines.append(f"reclaimed {len(result.reclaimed)} claim(s) of dead workers")
    _emit(as_json, doc, "\n".join(lines) if lines else "nothing to generate")
    from mynaemu.issuance.validate import printable_line

    for f in result.failed:
        click.echo(f"mynaemu issue: {printable_line(str(f['id']) + ': ' + str(f['error']))}", err=True)
    for line in result.worker_errors:
        click.echo(f"mynaemu issue: {printable_line(line)}", err=True)
    if result.failed or result.worker_errors:
        codes = {f["exit_code"] for f in result.failed}
        raise SystemExit(codes.pop() if len(codes) == 1 and not result.generated and not result.worker_errors
                         else EXIT_REFUSED)


@issue.command("deliver")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--auth-pin", required=True, help="利用者証明用暗証番号, 4 digits (AP-4).")
@click.option("--sign-pin", default=None, help="署名用パスワード, 6-16 of A-Z 0-9 (AP-3); needed with a signing certificate.")
@click.option("--kenhojo-pin", required=True, help="券面事項入力補助用暗証番号, 4 digits (AP-5).")
@click.option("--juki-pin", default=None, help="住基 PIN, 4 digits (AP-6; default: the auth PIN, AP-7).")
@click.option("-o", "--output", required=True, type=OUTPUT,
              help="Card image file to write (what `mynaemu card serve` takes).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--identity-check", default="counter photo-ID check (交付時本人確認)", show_default=True,
              type=text_type("identity_check"),
              help="The identity check that was made (STATE-3 item 7).")
@click.option("--pins-set-by", type=click.Choice(["holder", "legal-representative"]), default=None,
              help="Who registers the PINs (ELIG-3: the legal representative under 15; default: as the rule says).")
@click.option("--proxy", "proxy_relation", default=None,
              type=click.Choice(["household-member", "relative", "care-worker", "facility-staff", "neighbour", "agent"]),
              help="Handover to a 任意代理人 of this relation (FLOW-PROXY-1..6).")
@click.option("--proxy-reason", default=None,
              type=click.Choice(["homebound-with-household", "homebound-alone", "facility-resident", "busy"]),
              help="The principal's condition (FLOW-PROXY-3/4).")
@click.option("--proxy-doc", "proxy_docs", multiple=True, help="A document the proxy showed (repeat).")
@click.option("--notice", "notice_id", default=None, type=text_type("notice_id"), help="The 交付通知書 id the proxy brought (FLOW-PROXY-2).")
@click.option("--seal-cert-issued", type=DATE, default=None,
              help="Issue date of the principal's 印鑑登録証明書 (FLOW-PROXY-6).")
@click.option("--no-notification-card", is_flag=True, help="No 通知カード was collected (M4: after May 2020).")
@common
@click.pass_obj
@guarded
def cmd_deliver(obj, app_id, auth_pin, sign_pin, kenhojo_pin, juki_pin, output, force, identity_check,
                pins_set_by, proxy_relation, proxy_reason, proxy_docs, notice_id, seal_cert_issued,
                no_notification_card, at, as_json, operator, terminal):
    """交付 at the counter: PINs registered, the card image written to -o FILE."""
    from mynaemu.issuance.lifecycle.workflow import PROXY_DOCUMENTS, ProxyHandover

    if output.exists() and not force:
        raise IssueError(f"{output}: exists (use --force to overwrite)", EXIT_REFUSED)
    proxy = None
    if proxy_relation or proxy_reason or proxy_docs or seal_cert_issued or notice_id:
        if not (proxy_relation and proxy_reason):
            raise click.UsageError("a proxy handover needs --proxy and --proxy-reason")
        from mynaemu.issuance.validate import shown

        bad = sorted(set(proxy_docs) - set(PROXY_DOCUMENTS))
        if bad:
            raise click.BadParameter(f"unknown document(s) {', '.join(map(shown, bad))}; known: {', '.join(PROXY_DOCUMENTS)}",
                                     param_hint="--proxy-doc")
        proxy = ProxyHandover(condition=proxy_reason, relation=proxy_relation, documents=frozenset(proxy_docs),
                              notice_id=notice_id, seal_certificate_issued=seal_cert_issued)
    store, wf = obj.workflow(operator, terminal)
    with store:
        image = wf.deliver(app_id, at=at or _now(),
                           pins={"auth": auth_pin, "sign": sign_pin, "kenhojo": kenhojo_pin, "juki": juki_pin},
                           identity_check=identity_check,
                           pins_set_by=pins_set_by.replace("-", "_") if pins_set_by else None,
                           proxy=proxy, notification_card_collected=not no_notification_card,
                           output=output)  # written after the commit (cardwrite.py)
    has_sign = image.meta.get("sign_serial") is not None
    if sign_pin and not has_sign:
        click.echo("mynaemu issue: note: the card has no signing certificate; --sign-pin was not used", err=True)
    _emit(as_json, {"id": image.meta.get("application_id"), "card": str(output), "state": "active",
                    "auth_serial": image.meta.get("auth_serial"), "sign_serial": image.meta.get("sign_serial")},
          f"{output}: card {image.meta.get('application_id')} handed over")


@issue.command("suspend")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--caller-name", default=None, type=text_type("caller_name"), help="氏名 the caller gives (FLOW-SUSP-3).")
@click.option("--caller-birth", type=BIRTH, default=None, help="生年月日 the caller gives.")
@click.option("--caller-sex", type=click.Choice(["1", "2", "9"]), default=None, help="性別 the caller gives.")
@click.option("--caller-address", default=None, type=text_type("caller_address"), help="住所 the caller gives.")
@common
@click.pass_obj
@guarded
def cmd_suspend(obj, app_id, caller_name, caller_birth, caller_sex, caller_address, at, as_json, operator, terminal):
    """一時停止 + 一時保留 (call centre). With --caller-*, all four 基本4情報 must be given and must
    match (FLOW-SUSP-3); without them the operator suspends on their own authority (audited)."""
    from mynaemu.issuance.lifecycle.workflow import Basic4

    given = [caller_name, caller_birth, caller_sex, caller_address]
    caller = None
    if any(v is not None for v in given):
        if not all(v is not None for v in given):
            raise click.UsageError("FLOW-SUSP-3: give all four of --caller-name, --caller-birth, "
                                   "--caller-sex and --caller-address")
        caller = Basic4(caller_name, caller_birth, caller_sex, caller_address)
    store, wf = obj.workflow(operator, terminal)
    with store:
        held = wf.suspend(app_id, at=at or _now(), caller=caller)
    _emit(as_json, {"id": _norm_id(app_id), "state": "suspended", "held": [f"{s:X}" for s in held]},
          f"{app_id}: suspended; certificates on hold: {', '.join(f'{s:X}' for s in held) or 'none'}")


@issue.command("resume")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--identity-check", default="counter identity check with 一時停止解除申請書", show_default=True,
              type=text_type("identity_check"))
@click.option("--channel", type=click.Choice(["counter", "phone"]), default="counter", show_default=True,
              help="Where the release is asked for (FLOW-SUSP-3: counter only).")
@common
@click.pass_obj
@guarded
def cmd_resume(obj, app_id, identity_check, channel, at, as_json, operator, terminal):
    """解除 at the counter: the card and its certificates are usable again (FLOW-SUSP-3)."""
    store, wf = obj.workflow(operator, terminal)
    with store:
        released = wf.resume(app_id, at=at or _now(), identity_check=identity_check, channel=channel)
    _emit(as_json, {"id": _norm_id(app_id), "state": "active", "released": [f"{s:X}" for s in released]},
          f"{app_id}: released; certificates good again: {', '.join(f'{s:X}' for s in released) or 'none'}")


@issue.command("move")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--address", required=True, type=text_type("address"), help="The new 住所.")
@click.option("--address-alt", default=None, type=FLAGS, help="代替文字 flags of the new address.")
@click.option("--card", "card_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The holder's card file: rewritten with the new signing certificate (MOV-2).")
@common
@click.pass_obj
@guarded
def cmd_move(obj, app_id, address, address_alt, card_file, at, as_json, operator, terminal):
    """異動: the signing certificate is revoked (superseded) and reissued up to the
    user-authentication certificate's expiry, which is kept (MOV-1, VAL-10)."""
    image = _load_card(card_file) if card_file else None
    store, wf = obj.workflow(operator, terminal)
    with store:
        result = wf.move(app_id, at=at or _now(), address=address, address_alt=address_alt, card_image=image,
                         card_path=card_file)
    doc = {"id": result["id"], "revoked_sign_serial": _hex(result["revoked_sign_serial"]),
           "sign_serial": _hex(result["sign_serial"]), "card_written": result["image"] is not None}
    _emit(as_json, doc, f"{result['id']}: moved; signing certificate {doc['revoked_sign_serial'] or '-'} "
                        f"→ {doc['sign_serial'] or 'none'}{' (card rewritten)' if doc['card_written'] else ''}")


@issue.command("write-card")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--card", "card_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--sign-pin", default=None, help="A new signing password when the card gets its first signing certificate.")
@common
@click.pass_obj
@guarded
def cmd_write_card(obj, app_id, card_file, sign_pin, at, as_json, operator, terminal):
    """Rewrite the holder's card from the store (certificates, keys, 基本4情報), keeping its PINs."""
    image = _load_card(card_file)
    store, wf = obj.workflow(operator, terminal)
    with store:
        wf.write_card(app_id, at=at or _now(), card_image=image, sign_pin=sign_pin, card_path=card_file)
    _emit(as_json, {"id": _norm_id(app_id), "card": str(card_file)}, f"{card_file}: rewritten")


@issue.command("renew")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--card", "card_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="The holder's card: rewritten when only the certificates are renewed.")
@click.option("--sign-pin", default=None, help="Signing password for a first signing certificate.")
@click.option("--decline-sign-cert/--want-sign-cert", default=None, help="For a card renewal form (M9).")
@common
@click.pass_obj
@guarded
def cmd_renew(obj, app_id, card_file, sign_pin, decline_sign_cert, at, as_json, operator, terminal):
    """更新 within the window (VAL-7): a renewal application when the card is in its window, else
    new certificates when they are; refused outside, with the reason."""
    image = _load_card(card_file) if card_file else None
    store, wf = obj.workflow(operator, terminal)
    with store:
        r = wf.renew(app_id, at=at or _now(), card_image=image, sign_pin=sign_pin, decline_sign=decline_sign_cert,
                     card_path=card_file)
    doc = {"kind": r.kind, "id": r.id, "replaces": r.replaces, "reason": r.reason, "card_written": r.image is not None}
    _emit(as_json, doc, f"{r.id}: {'renewal application for ' + r.replaces if r.kind == 'card' else 'certificates renewed'}"
                        f" ({r.reason})")


@issue.command("reissue")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--reason", type=click.Choice(["lost", "damaged", "expired"]), default="lost", show_default=True)
@common
@click.pass_obj
@guarded
def cmd_reissue(obj, app_id, reason, at, as_json, operator, terminal):
    """再発行: the old card is abolished now (a lost card's certificates revoked as keyCompromise);
    prints the new application id, which then goes through generate and deliver."""
    store, wf = obj.workflow(operator, terminal)
    with store:
        new_id = wf.reissue(app_id, at=at or _now(), reason=reason)
    _emit(as_json, {"id": new_id, "replaces": _norm_id(app_id)}, new_id)


def _state_command(name: str, method: str, help_text: str, reasons: tuple | None = None):
    @click.argument("app_id", metavar="ID", type=FORM_ID)
    @common
    @click.pass_obj
    @guarded
    def command(obj, app_id, at, as_json, operator, terminal, reason=None):
        store, wf = obj.workflow(operator, terminal)
        with store:
            kwargs = {"reason": reason} if reasons else {}
            result = getattr(wf, method)(app_id, at=at or _now(), **kwargs)
            doc = wf.status(app_id, at=at or _now())
        out = {"id": doc["id"], "state": doc["state"]}
        if isinstance(result, dict):
            out.update({k: v for k, v in result.items() if k != "revoked_serials"})
            out["revoked_serials"] = [f"{s:X}" for s in result.get("revoked_serials", [])]
        _emit(as_json, out, f"{doc['id']}: {doc['state']} ({doc['state_label']})")

    command.__doc__ = help_text
    if reasons:
        command = click.option("--reason", required=True, type=click.Choice(list(reasons)))(command)
    return issue.command(name)(command)


_state_command("abolish", "abolish", "廃止 (FLOW-ABOL-1): the card leaves service; certificates revoked.",
               ("holder-request", "other"))
_state_command("collect", "collect", "回収: the abolished or revoked card is handed in.")
_state_command("destroy", "destroy", "廃棄: the collected card is destroyed.")
_state_command("revoke", "revoke", "失効 (M10): death, removal of the resident record (消除), or a change "
               "of 個人番号 (NUM-7; a new number is designated).", ("death", "removed", "number-change"))


@issue.command("status")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@click.option("--reveal", is_flag=True, help="Show the full 個人番号 (the access is audited).")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_status(obj, app_id, reveal, at, as_json, operator, terminal):
    """The card and its certificates as of --at (status good, hold, revoked or expired)."""
    store, wf = obj.workflow(operator, terminal)
    with store:
        doc = wf.status(app_id, at=at or _now(), reveal=reveal)
    if as_json:
        _emit(True, doc)
        return
    click.echo(f"{doc['id']}: {doc['state']} ({doc['state_label']}), {doc['kind']} card of {doc['holder']['name']}")
    click.echo(f"  個人番号 {doc['individual_number']}; card {doc['card_serial'] or '-'} "
               f"valid {doc['card_starts'] or '-'} .. {doc['card_expires'] or '-'}")
    for cert in doc["certificates"]:
        click.echo(f"  {cert['kind']:4s} {cert['serial']} {cert['not_before'][:10]} .. {cert['not_after'][:10]} "
                   f"{cert['status']}{' (' + cert['reason'] + ')' if cert['reason'] else ''}")


@issue.command("audit")
@click.argument("app_id", metavar="[ID]", required=False, type=FORM_ID)
@common(reads=True)
@click.pass_obj
@guarded
def cmd_audit(obj, app_id, at, as_json, operator, terminal):
    """The audit trail (SEC-8), all of it or for one card."""
    from mynaemu.issuance.store import check_form_id

    store, _ = obj.workflow(operator, terminal)
    with store:
        target = None
        if app_id:
            try:
                target = check_form_id(app_id)
            except ValueError as exc:
                raise IssueError(str(exc), EXIT_USAGE) from None
        rows = store.audit_rows(target)
    if as_json:
        _emit(True, rows)
        return
    from mynaemu.issuance.validate import printable_line

    for r in rows:  # one record, one line, whatever an older store holds (SEC-8)
        click.echo(printable_line(f"{r['at']} {r['operator']}@{r['terminal']} {r['operation']} {r['target'] or '-'} "
                                  f"{r['outcome']}{': ' + r['reason'] if r['reason'] else ''}",
                                  limit=100_000, first_line_only=False))


@issue.command("crl")
@click.option("--ca", "kind", required=True, type=click.Choice(["auth", "sign"]))
@click.option("-o", "--output", type=OUTPUT, default=None,
              help="Write the DER CRL here (default: PEM on stdout).")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_crl(obj, kind, output, at, as_json, operator, terminal):
    """The CA's complete CRL as of --at, from the store (holds as certificateHold)."""
    from mynaemu.issuance.pki.revocation import build_crl, check_crl_window, crl_der, crl_pem

    store, wf = obj.workflow(operator, terminal)
    at = at or _now()
    with store:
        # Refused (exit 2) before the number is spent: outside UTCTime or the CA's validity.
        check_crl_window(wf.pki.ca(kind), at)
        with store.transaction():  # the number is spent only with the CRL it numbers and its audit
            number = _next_crl_number(store, kind, at)
            crl = build_crl(wf.pki.ca(kind), store, at=at, crl_number=number)
            store.audit(at=at, operator=operator, terminal=terminal, operation="crl", target=kind, outcome="ok",
                        reason=f"CRL number {number}, {len(list(crl))} entries")
    if output is not None:
        from mynaemu.card.safefile import write_file_atomic

        write_file_atomic(output, crl_der(crl), mode=0o644)   # a CRL is published: world-readable
    doc = {"ca": kind, "number": number, "this_update": crl.last_update_utc.isoformat(),
           "next_update": crl.next_update_utc.isoformat(), "file": str(output) if output else None,
           "entries": [{"serial": f"{e.serial_number:X}", "revoked_at": e.revocation_date_utc.isoformat(),
                        "reason": _crl_reason(e)} for e in crl]}
    if as_json:
        _emit(True, doc)
    elif output is None:
        click.echo(crl_pem(crl).decode("ascii"), nl=False)
    else:
        click.echo(f"{output}: {kind} CRL number {number}, {len(doc['entries'])} entries")


def _next_crl_number(store, kind: str, at: _dt.datetime) -> int:
    # RFC 5280 §5.2.3: CRL numbers increase; kept per CA in the settings table.
    return store.bump_setting(f"crl_number_{kind}", at_least=int(at.timestamp()))


def _crl_reason(entry) -> str | None:
    from cryptography import x509

    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except x509.ExtensionNotFound:
        return None


@issue.command("ocsp-serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address (loopback by default).")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="0 = any free port.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes sharing the port (default: one per CPU; 1: a single process).")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_ocsp_serve(obj, host, port, workers, at, as_json, operator, terminal):
    """Serve OCSP (POST / GET) and /crl/auth.crl, /crl/sign.crl from the store until stopped.

    The responder's clock starts at --at (default now) and runs on, so a demo can live on any
    date. The first line on stdout is the responder URL (JSON with --json).
    """
    from mynaemu.issuance.pki.ocsp import OcspResponder, crl_url, serve_ocsp
    from mynaemu.issuance.store import StoreRevocationSource
    from mynaemu.issuance.store.pki import store_pki

    store = obj.open_store()  # create / migrate the store before the threads read it
    try:
        pki = store_pki(store)  # the store's own CAs (created at first use)
    finally:
        store.close()
    start = _dt.datetime.now(_dt.timezone.utc)
    offset = (at - start) if at is not None else _dt.timedelta(0)
    from mynaemu.issuance.http.prefork import default_workers

    if (workers or default_workers()) > 1:
        from mynaemu.tools.cli.workers import ocsp_serve_workers

        return ocsp_serve_workers(obj.location(), pki, lambda: _dt.datetime.now(_dt.timezone.utc) + offset,
                                  host, port, workers or default_workers(), as_json)
    responder = OcspResponder({"auth": pki.auth_ca, "sign": pki.sign_ca}, StoreRevocationSource(obj.location()),
                              clock=lambda: _dt.datetime.now(_dt.timezone.utc) + offset)
    server, thread, url = serve_ocsp(responder, host, port)
    # one line either way, so a script can read it from a pipe
    doc = {"url": url, "crl": {k: crl_url(url, k) for k in ("auth", "sign")}}
    click.echo(json.dumps(doc) if as_json else url)
    sys.stdout.flush()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()


@issue.command("persona")
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
        raise IssueError(f"{output}: exists (use --force to overwrite)", EXIT_REFUSED)
    store, wf = obj.workflow(operator, terminal)
    with store:
        result = build_pipeline_persona(wf, name, at=at or _now())
        result.image.save(output)
        doc = wf.status(result.id, at=at or _now())
    summary = {"persona": name, "id": result.id, "file": str(output), "state": doc["state"],
               "card_expires": doc["card_expires"], "auth_cert": doc["auth_cert"], "sign_cert": doc["sign_cert"],
               "pins": result.pins, "description": result.description}
    _emit(as_json, summary, f"{output}: {name} card {result.id} ({doc['state']}); {result.description}")


def _hex(serial):
    return f"{serial:X}" if serial is not None else None


def _norm_id(app_id: str) -> str:
    from mynaemu.issuance.store import normalise_form_id

    return normalise_form_id(app_id)
