"""Credentials for every `mynaemu issue` command (SEC-4 … SEC-7): who is asking, and may they.

The ID comes from --operator or MYNAEMU_OPERATOR; the password from MYNAEMU_PASSWORD, else a
no-echo prompt when stdin is a terminal. Never from an option (it would sit in the shell history
and in `ps`), never echoed, never logged or audited. Without a terminal (CI, a pipe) there is no
prompt: no password is a refusal. The decision itself is issuance/staff/authorise.py; here it is
wired to click: `authenticated` wraps a command so that it runs only for an allowed member of
staff, with the authenticated ID (lower case) as its operator. A refusal is one line on stderr
and exit 5 (errors.ExitCode.DENIED), audited, with nothing else changed.
"""
from __future__ import annotations

import datetime as _dt
import functools
import os
import sys

import click

from mynaemu.issuance import clock
from mynaemu.tools.cli.errors import CliFail, ExitCode

__all__ = ["Denied", "authenticated", "operation_of", "read_password", "login"]

PASSWORD_ENV = "MYNAEMU_PASSWORD"


class Denied(CliFail):
    """An authentication or authorisation refusal: `mynaemu issue: …`, exit 5 (errors.ExitCode.DENIED)."""

    prog = "mynaemu issue"


def operation_of(ctx: click.Context) -> str:
    """The command's name below the `issue` group: "apply", "staff add", …"""
    names = []
    while ctx is not None and ctx.command.name != "issue":
        names.append(ctx.command.name)
        ctx = ctx.parent
    return " ".join(reversed(names))


def read_password(prompt: str = "Password") -> str | None:
    """MYNAEMU_PASSWORD, else a no-echo prompt on a terminal, else None (no prompt without one)."""
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if sys.stdin is not None and sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True, err=True, default="", show_default=False) or None
    return None


def login(obj, operation: str, *, operator: str | None, at: _dt.datetime | None, terminal: str,
          target: str | None = None) -> str:
    """The authenticated staff ID allowed to run `operation` at `at`, else Denied (exit 5)."""
    from mynaemu.issuance.staff.authorise import AuthRefused, authorise
    from mynaemu.issuance.store.errors import StoreBusy, StoreError

    at = at or clock.now()
    password = read_password()
    try:
        store = obj.open_store()
        try:
            return authorise(store, operator=operator, password=password, operation=operation, at=at,
                             terminal=terminal, target=target)
        finally:
            store.close()
    except AuthRefused as exc:
        raise Denied(str(exc), ExitCode.DENIED) from None
    except StoreBusy as exc:
        raise Denied(str(exc).splitlines()[0], ExitCode.BUSY) from None
    except StoreError as exc:
        raise Denied(str(exc).splitlines()[0], ExitCode.REFUSED) from None


def authenticated(func):
    """Run `func` (an `issue` command taking operator=, at=, terminal=) only for an authenticated,
    authorised member of staff; its `operator` becomes the staff ID. A service command
    (rights.SERVICE_OPERATIONS) runs under its service identity instead."""
    from mynaemu.issuance.staff.rights import SERVICE_OPERATIONS, operation_for

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        command = operation_of(ctx)
        if command in SERVICE_OPERATIONS:
            kwargs["operator"] = SERVICE_OPERATIONS[command]
            return func(*args, **kwargs)
        operation = operation_for(command, reveal=bool(kwargs.get("reveal")))
        kwargs["operator"] = login(ctx.obj, operation, operator=kwargs.get("operator"), at=kwargs.get("at"),
                                   terminal=kwargs.get("terminal") or "cli", target=kwargs.get("app_id"))
        return func(*args, **kwargs)

    return wrapper
