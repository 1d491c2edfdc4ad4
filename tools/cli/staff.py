"""`mynaemu issue init` and `mynaemu issue staff …`: the back office's staff accounts (SEC-4 … SEC-7).

    issue init --officer ID [--json]         the first セキュリティ責任者 of a store without staff (also
                                             the migration of a store made before accounts); prints
                                             the initial password once (--json: "password")
    issue staff add ID --role ROLE [--json]  officer: a new account; prints its initial password once
    issue staff passwd [--new-password P]    one's own password (else read twice from stdin); the one
                                             command a password unchanged for 3 months may still run
    issue staff grant ID RIGHT               officer: a role or the `number` right (SEC-1, SEC-6)
    issue staff revoke ID [RIGHT]            officer: revoke the ID (SEC-7), or withdraw one right
    issue staff list [--json]                officer: accounts, rights held at --at, password ages
    issue staff rights [--json]              the table of which role may run which operation (SEC-6)

Every one takes --at (the step's instant: grants, withdrawals, revocations and password changes
count from it) and the credentials of every `issue` command (credentials.py).
"""
from __future__ import annotations

import functools
import sys

import click

from mynaemu.issuance import clock
from mynaemu.tools.cli.errors import ExitCode
from mynaemu.tools.cli.issue import ISSUE_GROUP, INSTANT, check_future, common, emit, fail, guarded
from mynaemu.tools.cli.types import text_type

__all__ = ["cmd_init", "staff"]


def staff_errors(func):
    """The staff layer's refusals as one line with the group's exit codes (inside `guarded`)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from mynaemu.issuance.staff.accounts import StaffError, StaffRefused, UnknownStaff

        try:
            return func(*args, **kwargs)
        except UnknownStaff as exc:
            raise fail(str(exc), ExitCode.NOT_FOUND) from None
        except (StaffRefused, StaffError) as exc:
            raise fail(str(exc), ExitCode.REFUSED) from None

    return wrapper


def _accounts(obj, terminal):
    from mynaemu.issuance.staff.accounts import Accounts

    store = obj.open_store()
    return store, Accounts(store, terminal=terminal)


@click.command("init", cls=ISSUE_GROUP.command_class)
@click.option("--officer", required=True, type=text_type("operator"),
              help="The staff ID of the first security officer (セキュリティ責任者).")
@click.option("--at", "at", type=INSTANT, default=None,
              help="The instant the account starts (ISO 8601; naive = JST; default now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (the field `password`).")
@click.option("--terminal", envvar="MYNAEMU_TERMINAL", default="cli", show_default=True, type=text_type("terminal"),
              help="Terminal id for the audit (DATA-3 操作端末ID).")
@click.option("--allow-future", "allow_future", is_flag=True,
              help="Allow --at more than one day after this machine's clock.")
@click.pass_obj
@guarded
@staff_errors
def cmd_init(obj, officer, at, as_json, terminal, allow_future):
    """The first security officer of a store with no staff accounts (a new store, or one made
    before accounts existed: this is its migration). Prints the initial password once; refused
    (exit 1) when the store has staff. Set MYNAEMU_OPERATOR and MYNAEMU_PASSWORD to use it."""
    check_future(at, allow_future)
    at = at or clock.now()
    store, accounts = _accounts(obj, terminal)
    with store:
        password = accounts.init_officer(officer, at=at)
    staff_id = officer.lower()
    emit(as_json, {"id": staff_id, "role": "officer", "password": password},
          f"{staff_id}: security officer (officer); initial password (shown once): {password}")


@click.group("staff", cls=ISSUE_GROUP)
def staff():
    """Staff accounts and rights (SEC-4 … SEC-7): add, passwd, grant, revoke, list, rights."""


@staff.command("add")
@click.argument("staff_id", metavar="ID", type=text_type("operator"))
@click.option("--role", required=True, type=click.Choice(["officer", "counter", "issuer", "callcentre", "viewer"]),
              help="The duty the account is for (`mynaemu issue staff rights`).")
@common
@click.pass_obj
@guarded
@staff_errors
def cmd_add(obj, staff_id, role, at, as_json, operator, terminal):
    """A new staff account with ROLE; prints its initial password once (officer)."""
    store, accounts = _accounts(obj, terminal)
    with store:
        password = accounts.add(operator, staff_id, role, at=at or clock.now())
    staff_id = staff_id.lower()
    emit(as_json, {"id": staff_id, "role": role, "password": password},
          f"{staff_id}: {role}; initial password (shown once): {password}")


def _read_new_password() -> str:
    """The new password twice: hidden prompts on a terminal, else two lines of stdin."""
    if sys.stdin is not None and sys.stdin.isatty():
        return click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True)
    stream = sys.stdin
    first, second = stream.readline().rstrip("\r\n"), stream.readline().rstrip("\r\n")
    if not first:
        raise fail("staff passwd: give --new-password or the new password twice on stdin", ExitCode.USAGE)
    if first != second:
        raise fail("staff passwd: the two new passwords differ; nothing changed", ExitCode.USAGE)
    return first


@staff.command("passwd")
@click.option("--new-password", default=None,
              help="The new password (else read twice from stdin, or hidden prompts on a terminal; an option "
                   "is visible to other users in `ps` and stays in the shell history).")
@common
@click.pass_obj
@guarded
@staff_errors
def cmd_passwd(obj, new_password, at, as_json, operator, terminal):
    """Change your own password; it then works for 3 months from --at (SEC-5)."""
    new_password = new_password if new_password is not None else _read_new_password()
    store, accounts = _accounts(obj, terminal)
    with store:
        accounts.passwd(operator, new_password, at=at or clock.now())
    emit(as_json, {"id": operator, "changed": True}, f"{operator}: password changed")


@staff.command("grant")
@click.argument("staff_id", metavar="ID", type=text_type("operator"))
@click.argument("right", metavar="RIGHT")
@common
@click.pass_obj
@guarded
@staff_errors
def cmd_grant(obj, staff_id, right, at, as_json, operator, terminal):
    """Grant RIGHT (a role, or `number`: the 個人番号 in full, SEC-1) from --at on (officer)."""
    store, accounts = _accounts(obj, terminal)
    with store:
        accounts.grant(operator, staff_id, right, at=at or clock.now())
    emit(as_json, {"id": staff_id.lower(), "granted": right}, f"{staff_id.lower()}: {right} granted")


@staff.command("revoke")
@click.argument("staff_id", metavar="ID", type=text_type("operator"))
@click.argument("right", metavar="[RIGHT]", required=False)
@common
@click.pass_obj
@guarded
@staff_errors
def cmd_revoke(obj, staff_id, right, at, as_json, operator, terminal):
    """Revoke the ID from --at on (SEC-7: the day its holder leaves), or with RIGHT withdraw
    only that right (officer). A revoked ID is never reused."""
    store, accounts = _accounts(obj, terminal)
    with store:
        if right is None:
            accounts.revoke(operator, staff_id, at=at or clock.now())
        else:
            accounts.withdraw(operator, staff_id, right, at=at or clock.now())
    doc = {"id": staff_id.lower(), "revoked": right or "id"}
    emit(as_json, doc, f"{staff_id.lower()}: {'ID revoked' if right is None else right + ' withdrawn'}")


@staff.command("list")
@common(reads=True)
@click.pass_obj
@guarded
@staff_errors
def cmd_list(obj, at, as_json, operator, terminal):
    """The accounts, the rights each holds at --at, password set/expiry, revocation (officer)."""
    store, accounts = _accounts(obj, terminal)
    with store:
        views = accounts.list(at or clock.now(), actor=operator)
    if as_json:
        emit(True, [v.as_dict() for v in views])
        return
    for v in views:
        click.echo(f"{v.id}: {', '.join(v.rights) or 'no rights'}; password set {v.password_set_at}, "
                   f"stops {v.password_expires_at}"
                   f"{'; revoked ' + v.revoked_at if v.revoked_at else ''}")


@staff.command("rights")
@common(reads=True)
@click.pass_obj
@guarded
def cmd_rights(obj, at, as_json, operator, terminal):
    """The table of which role may run which operation (SEC-6); `number` = with the number right."""
    from mynaemu.issuance.staff.rights import ROLES, table_rows

    rows = table_rows()
    if as_json:
        emit(True, rows)
        return
    width = max(len(r["operation"]) for r in rows)
    click.echo(f"{'operation':{width}s}  " + "  ".join(f"{role:10s}" for role in ROLES).rstrip())
    for r in rows:
        click.echo(f"{r['operation']:{width}s}  " + "  ".join(f"{r[role]:10s}" for role in ROLES).rstrip())
