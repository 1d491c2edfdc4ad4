"""The CLI's one error type and its one table of exit codes (README "Exit codes").

Exit codes live here and nowhere else in the CLI: the back office's errors carry a kind (what
went wrong, issuance/errors.py), and EXIT_FOR_KIND turns a kind into a code at this edge. Every
command refuses by raising CliFail: one line on stderr, `PROG: message` (escaped by
validate.printable_line, so nothing in a message can forge a second line or drive the terminal),
and the exit code. Shaped after the CliFail of Yubico's ykman (exit status only at the edge).

    code  scope    meaning
    0     all      success (`card script`: every expectation held)
    1     all      refused or failed, one line on stderr saying why (the rule id or state is
                   named, nothing changed); an internal error (audited)
    2     all      bad usage or bad arguments, one line (`card script`: a script that cannot be
                   read; nothing was sent to any card)
    3     issue    unknown application id
    4     issue    the store stayed locked by another process beyond the busy timeout
    5     issue    authentication or authorisation refused (staff accounts, issue 13); audited
    3-16  kiosk    one code per refusal class (the kiosk's EXIT_CLASSES; `mynaemu kiosk --help`)
"""
from __future__ import annotations

import enum

import click

from mynaemu.issuance.errors import ErrorKind, kind_of

__all__ = ["ExitCode", "EXIT_MEANINGS", "KIOSK_CODES", "EXIT_FOR_KIND", "exit_code_for", "one_line",
           "CliFail"]


class ExitCode(enum.IntEnum):
    OK = 0
    REFUSED = 1
    USAGE = 2
    NOT_FOUND = 3       # `issue` only
    BUSY = 4            # `issue` only
    DENIED = 5          # `issue` only: authentication or authorisation refused (issue 13)


# What each code means, and which commands give it (the README's "Exit codes" table as data).
EXIT_MEANINGS = {
    ExitCode.OK: ("all", "success (`card script`: every expectation held)"),
    ExitCode.REFUSED: ("all", "refused or failed; one line on stderr says why (the rule id or state is "
                              "named, nothing changed)"),
    ExitCode.USAGE: ("all", "bad usage or argument, one line (`card script`: a script that cannot be "
                            "read; nothing was sent)"),
    ExitCode.NOT_FOUND: ("issue", "unknown id"),
    ExitCode.BUSY: ("issue", "store busy"),
    ExitCode.DENIED: ("issue", "authentication or authorisation refused (no or wrong credentials, a role or "
                               "right missing, a password unchanged for 3 months, a revoked ID); audited"),
}

# `mynaemu kiosk`: one code per refusal class, listed by the kiosk (its EXIT_CLASSES) in its help.
KIOSK_CODES = range(3, 17)

# The back office's kinds of error (issuance/errors.py) at the CLI's edge.
EXIT_FOR_KIND = {
    ErrorKind.REFUSED: ExitCode.REFUSED,
    ErrorKind.BAD_INPUT: ExitCode.USAGE,
    ErrorKind.NOT_FOUND: ExitCode.NOT_FOUND,
    ErrorKind.BUSY: ExitCode.BUSY,
}


def exit_code_for(error: BaseException | ErrorKind | str) -> ExitCode:
    """The exit code of a domain error, of its kind, or of a kind's value as a batch event carries
    it; REFUSED for an error that has no kind."""
    if isinstance(error, BaseException):
        kind = kind_of(error)
        if kind is None:
            from mynaemu.issuance.store.errors import StoreBusy

            kind = ErrorKind.BUSY if isinstance(error, StoreBusy) else ErrorKind.REFUSED
        error = kind
    return EXIT_FOR_KIND[ErrorKind(error)]


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    lines = str(exc).splitlines()
    return (lines[0] if lines else "") or type(exc).__name__


class CliFail(click.ClickException):
    """A refusal at the CLI's edge: `PROG: message` as one escaped line on stderr, and `code`.

    `prog` names the command group the line speaks for ("mynaemu", "mynaemu issue",
    "mynaemu kiosk"); a subclass may fix it as a class attribute."""

    prog = "mynaemu"

    def __init__(self, message: str, code: int = ExitCode.REFUSED, *, prog: str | None = None):
        super().__init__(message)
        self.exit_code = int(code)
        if prog is not None:
            self.prog = prog

    def show(self, file=None):
        from mynaemu.issuance.validate import printable_line

        click.echo(f"{self.prog}: {printable_line(self.format_message())}", err=True)
