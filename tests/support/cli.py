"""Running the `mynaemu` command in-process (click's CliRunner) from a test."""
from __future__ import annotations

from click.testing import CliRunner

from mynaemu.tools.cli import main


def run_cli(*args, code: int = 0):
    """`mynaemu ARGS…`; asserts the exit code is `code` and returns click's Result (stdout and
    stderr apart). Exceptions other than the CLI's own exits propagate, with their traceback."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, (args, result.output)
    return result


def run_issue(*args, code: int = 0):
    """`mynaemu issue ARGS…`, as run_cli."""
    return run_cli("issue", *args, code=code)
