"""`mynaemu issue …`: the TEST back office on the command line (store + workflow + CRL/OCSP).

Every command works on the store under --home / MYNAEMU_HOME (default: the user's data
directory), or on PostgreSQL with --db URL / MYNAEMU_DB (postgresql://…; the same schema), takes --at (the settable clock; ISO 8601 date or datetime, naive = JST, default now),
--operator (the staff ID; MYNAEMU_OPERATOR) with the password from MYNAEMU_PASSWORD or a prompt
(credentials.py, SEC-4), --terminal for the audit (SEC-8; MYNAEMU_TERMINAL or "cli") and --json. Errors are one line on stderr; exit codes are in the group's help.
"""
from __future__ import annotations

import datetime as _dt
import functools
import json
from pathlib import Path

import click

from mynaemu.issuance import clock
from mynaemu.tools.cli.errors import CliFail, ExitCode, exit_code_for, one_line
from mynaemu.tools.cli.groups import one_line_group
# InstantType / DateType and the other checked types live in tools/cli/types.py
# (docs/input-limits.md); INSTANT is imported from here by tools/cli/kiosk.py.
from mynaemu.tools.cli.types import BIRTH, DATE, FLAGS, FORM_ID, INSTANT, OUTPUT, text_type  # noqa: F401
from mynaemu.tools.cli.credentials import authenticated  # SEC-4..SEC-7 (issue 13)

PROG = "mynaemu issue"
# Bad arguments of the group and of every subcommand are one line with exit 2 (click prints three).
ISSUE_GROUP = one_line_group(PROG)
ISSUE_COMMAND = ISSUE_GROUP.command_class

# Subcommands kept in modules of their own, imported when they run (groups.py).
LAZY_ISSUE = {
    "generate": "mynaemu.tools.cli.issue_generate:cmd_generate",
    "pin-reset": "mynaemu.tools.cli.issue_pins:cmd_pin_reset",     # 暗証番号の初期化 (issue 13)
    "status": "mynaemu.tools.cli.issue_reads:cmd_status",
    "audit": "mynaemu.tools.cli.issue_reads:cmd_audit",
    "search": "mynaemu.tools.cli.issue_reads:cmd_search",
    "persona": "mynaemu.tools.cli.issue_reads:cmd_persona",
    "audit-purge": "mynaemu.tools.cli.issue_retention:cmd_audit_purge",   # SEC-8, SEC-12
    "crl": "mynaemu.tools.cli.issue_revocation:cmd_crl",
    "ocsp-serve": "mynaemu.tools.cli.issue_revocation:cmd_ocsp_serve",
    "init": "mynaemu.tools.cli.staff:cmd_init",       # staff accounts (issue 13)
    "staff": "mynaemu.tools.cli.staff:staff",
    "kiosk-history": "mynaemu.tools.cli.issue_kiosk:cmd_kiosk_history",   # CVS-18 item 3 (issue 13)
}


def fail(message: str, code: int = ExitCode.REFUSED) -> CliFail:
    """A refusal of an `issue` command: `mynaemu issue: message` and `code` (errors.py)."""
    return CliFail(message, code, prog=PROG)


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
    now = now or clock.utc_now()
    if at - now > FUTURE_SLACK:
        raise fail(f"--at {at.isoformat()} is more than one day after this machine's clock "
                   f"({now.astimezone(clock.JST).isoformat(timespec='seconds')}); a state-changing step "
                   "dated in the future needs --allow-future", ExitCode.USAGE)


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
    func = authenticated(func)   # SEC-4..SEC-7: staff ID + password, rights at --at (credentials.py)
    func = click.option("--terminal", envvar="MYNAEMU_TERMINAL", default="cli", show_default=True,
                        type=text_type("terminal"),
                        help="Terminal id for the audit (DATA-3 操作端末ID).")(func)
    func = click.option("--operator", envvar="MYNAEMU_OPERATOR", default=None, type=text_type("operator"),
                        help="Your staff ID (default $MYNAEMU_OPERATOR); the password comes from "
                             "$MYNAEMU_PASSWORD or a no-echo prompt (SEC-4; the audit's 操作者ID, DATA-3).")(func)
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option("--at", "at", type=INSTANT, default=None,
                        help="The instant of the operation (ISO 8601; naive = JST; default now).")(func)
    return func


def guarded(func):
    """Map the back office's exceptions to one-line messages and the documented exit codes: a
    domain error by its kind (errors.EXIT_FOR_KIND), the store or a card image that cannot be
    used 1, anything unexpected 1 without its text."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from mynaemu.card.image import CardImageError
        from mynaemu.issuance.errors import InputError, WorkflowError
        from mynaemu.issuance.store.errors import StoreError

        try:
            return func(*args, **kwargs)
        except (WorkflowError, InputError, StoreError, CardImageError, OSError) as exc:
            # WorkflowError by its kind; InputError: the domain's input rules (validate.py), bad
            # arguments; StoreBusy: busy; another StoreError, a card image or a file: refused
            raise fail(one_line(exc), exit_code_for(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 — the workflow audited it; one line, no traceback
            raise unexpected_error(exc, PROG) from exc

    return wrapper


def unexpected_error(exc: Exception, prog: str) -> click.ClickException:
    """An exception nobody expected, as one line and exit 1; MYNAEMU_DEBUG=1 keeps the traceback."""
    import os

    if os.environ.get("MYNAEMU_DEBUG"):
        raise exc
    # only the class: the text of an unexpected error may hold a PIN or a 個人番号
    return CliFail(f"internal error ({type(exc).__name__}) in this step; it was audited, nothing was "
                   f"changed (MYNAEMU_DEBUG=1 shows the traceback)", ExitCode.REFUSED, prog=prog)


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


def emit(as_json: bool, doc, text: str | None = None) -> None:
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

@click.group("issue", cls=ISSUE_GROUP, lazy_subcommands=LAZY_ISSUE)
@click.option("--home", envvar="MYNAEMU_HOME", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Store directory (default: $MYNAEMU_HOME, else the user's data directory).")
@click.option("--db", envvar="MYNAEMU_DB", default=None, metavar="URL",
              help="PostgreSQL instead of the SQLite file: postgresql://user:password@host:port/dbname "
                   "(default: $MYNAEMU_DB; needs the pg extra, psycopg 3).")
@click.pass_context
def issue(ctx, home, db):
    """The TEST issuance back office: 申請 → 受付 → 鍵ペア生成/証明書発行 → 交付 → 一時停止/解除,
    異動, 更新, 再発行, 廃止/回収/廃棄, 失効, with CRLs and an OCSP responder from the store.

    Every command is run by a member of staff: the ID from --operator or $MYNAEMU_OPERATOR, the
    password from $MYNAEMU_PASSWORD or a no-echo prompt on a terminal. `issue init --officer ID`
    makes a store's first security officer (also for a store made before accounts); `issue staff`
    manages accounts, and `issue staff rights` prints which role may run which command.

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
      5  authentication or authorisation refused (no or wrong credentials, a role or right
         missing, a password unchanged for 3 months, a revoked ID); audited, nothing changed
    """
    from mynaemu.issuance.store.postgres import is_url

    if db is not None and not is_url(db):
        from mynaemu.issuance.validate import shown

        raise fail(f"--db must be a postgresql:// URL, got {shown(db.split(':', 1)[0], 20)}...", ExitCode.USAGE)
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
        app_id = wf.apply(name=name, birth=birth, sex=sex, address=address, at=at or clock.now(),
                          guardianship=guardianship, decline_sign=decline_sign_cert, name_kana=name_kana,
                          name_alt=name_alt, address_alt=address_alt, alt_confirmed=not alt_unconfirmed)
    emit(as_json, {"id": app_id}, app_id)


@issue.command("receive")
@click.argument("app_id", metavar="ID", type=FORM_ID)
@common
@click.pass_obj
@guarded
def cmd_receive(obj, app_id, at, as_json, operator, terminal):
    """受付: register the application (generate does this too when needed)."""
    store, wf = obj.workflow(operator, terminal)
    with store:
        wf.receive(app_id, at=at or clock.now())
        doc = wf.status(app_id, at=at or clock.now(), audited=False)  # receive's record covers it
    emit(as_json, {"id": doc["id"], "state": doc["state"]}, f"{doc['id']}: {doc['state']}")


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
        raise fail(f"{output}: exists (use --force to overwrite)", ExitCode.REFUSED)
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
        image = wf.deliver(app_id, at=at or clock.now(),
                           pins={"auth": auth_pin, "sign": sign_pin, "kenhojo": kenhojo_pin, "juki": juki_pin},
                           identity_check=identity_check,
                           pins_set_by=pins_set_by.replace("-", "_") if pins_set_by else None,
                           proxy=proxy, notification_card_collected=not no_notification_card,
                           output=output)  # written after the commit (cardwrite.py)
    has_sign = image.meta.get("sign_serial") is not None
    if sign_pin and not has_sign:
        click.echo("mynaemu issue: note: the card has no signing certificate; --sign-pin was not used", err=True)
    emit(as_json, {"id": image.meta.get("application_id"), "card": str(output), "state": "active",
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
        held = wf.suspend(app_id, at=at or clock.now(), caller=caller)
    emit(as_json, {"id": _norm_id(app_id), "state": "suspended", "held": [f"{s:X}" for s in held]},
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
        released = wf.resume(app_id, at=at or clock.now(), identity_check=identity_check, channel=channel)
    emit(as_json, {"id": _norm_id(app_id), "state": "active", "released": [f"{s:X}" for s in released]},
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
        result = wf.move(app_id, at=at or clock.now(), address=address, address_alt=address_alt, card_image=image,
                         card_path=card_file)
    doc = {"id": result["id"], "revoked_sign_serial": _hex(result["revoked_sign_serial"]),
           "sign_serial": _hex(result["sign_serial"]), "card_written": result["image"] is not None}
    emit(as_json, doc, f"{result['id']}: moved; signing certificate {doc['revoked_sign_serial'] or '-'} "
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
        wf.write_card(app_id, at=at or clock.now(), card_image=image, sign_pin=sign_pin, card_path=card_file)
    emit(as_json, {"id": _norm_id(app_id), "card": str(card_file)}, f"{card_file}: rewritten")


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
        r = wf.renew(app_id, at=at or clock.now(), card_image=image, sign_pin=sign_pin, decline_sign=decline_sign_cert,
                     card_path=card_file)
    doc = {"kind": r.kind, "id": r.id, "replaces": r.replaces, "reason": r.reason, "card_written": r.image is not None}
    emit(as_json, doc, f"{r.id}: {'renewal application for ' + r.replaces if r.kind == 'card' else 'certificates renewed'}"
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
        new_id = wf.reissue(app_id, at=at or clock.now(), reason=reason)
    emit(as_json, {"id": new_id, "replaces": _norm_id(app_id)}, new_id)


def _state_command(name: str, method: str, help_text: str, reasons: tuple | None = None):
    @click.argument("app_id", metavar="ID", type=FORM_ID)
    @common
    @click.pass_obj
    @guarded
    def command(obj, app_id, at, as_json, operator, terminal, reason=None):
        store, wf = obj.workflow(operator, terminal)
        with store:
            kwargs = {"reason": reason} if reasons else {}
            result = getattr(wf, method)(app_id, at=at or clock.now(), **kwargs)
            doc = wf.status(app_id, at=at or clock.now(), audited=False)  # the step's record covers it
        out = {"id": doc["id"], "state": doc["state"]}
        if isinstance(result, dict):
            out.update({k: v for k, v in result.items() if k != "revoked_serials"})
            out["revoked_serials"] = [f"{s:X}" for s in result.get("revoked_serials", [])]
        emit(as_json, out, f"{doc['id']}: {doc['state']} ({doc['state_label']})")

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


def _hex(serial):
    return f"{serial:X}" if serial is not None else None


def _norm_id(app_id: str) -> str:
    from mynaemu.issuance.store import normalise_form_id

    return normalise_form_id(app_id)
