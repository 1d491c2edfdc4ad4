"""The CLI's one error type and one table of exit codes (tools/cli/errors.py), and the rule that
exit codes live only at the CLI's edge: the back office's errors carry a kind instead."""
from __future__ import annotations

import ast
import json
import pathlib
import re

import click
import pytest
from click.testing import CliRunner

from mynaemu.issuance import errors as domain
from mynaemu.issuance import validate
from mynaemu.issuance.lifecycle import workflow
from mynaemu.issuance.store import StoreBusy, StoreConflict, StoreError
from mynaemu.tools.cli import errors as cli_errors
from mynaemu.tools.cli import main
from mynaemu.tools.cli.errors import EXIT_FOR_KIND, EXIT_MEANINGS, CliFail, ExitCode, exit_code_for

ROOT = pathlib.Path(__file__).resolve().parents[3]


# --- the table, cell by cell ------------------------------------------------------------------

@pytest.mark.parametrize("kind, code", [
    (domain.ErrorKind.REFUSED, 1),
    (domain.ErrorKind.BAD_INPUT, 2),
    (domain.ErrorKind.NOT_FOUND, 3),
    (domain.ErrorKind.BUSY, 4),
])
def test_each_kind_has_its_exit_code(kind, code):
    assert EXIT_FOR_KIND[kind] == code
    assert exit_code_for(kind) == code
    assert exit_code_for(kind.value) == code          # as a batch event carries it (JSON)


def test_every_kind_is_mapped_and_every_code_has_a_meaning():
    assert set(EXIT_FOR_KIND) == set(domain.ErrorKind)
    assert set(EXIT_MEANINGS) == set(ExitCode)
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5]   # 5: staff accounts refused (issue 13)
    assert {scope for scope, _ in EXIT_MEANINGS.values()} == {"all", "issue"}
    assert list(cli_errors.KIOSK_CODES) == list(range(3, 17))


@pytest.mark.parametrize("exc, code", [
    (workflow.IllegalState("card is suspended"), 1),
    (workflow.Refused("VAL-7: renewal not yet open"), 1),
    (workflow.WorkflowError("refused"), 1),
    (workflow.NotFound("no application 0000000000000000"), 3),
    (workflow.BadInput("bad PIN"), 2),
    (validate.InputError("name too long"), 2),
    (StoreBusy("locked"), 4),
    (StoreConflict("serialization failure"), 4),
    (StoreError("cannot open"), 1),
    (OSError("disk full"), 1),
    (RuntimeError("anything else"), 1),
])
def test_exit_code_of_each_error(exc, code):
    assert exit_code_for(exc) == code


def test_domain_errors_carry_a_kind_and_no_exit_code():
    for cls in (domain.WorkflowError, domain.IllegalState, domain.Refused, domain.NotFound, domain.BadInput,
                domain.InputError):
        assert isinstance(cls.kind, domain.ErrorKind)
        assert not hasattr(cls, "exit_code"), cls
    # workflow.py and validate.py hand out the very same classes
    assert workflow.Refused is domain.Refused and workflow.NotFound is domain.NotFound
    assert workflow.BadInput is domain.BadInput and validate.InputError is domain.InputError
    assert issubclass(domain.BadInput, validate.InputError) and issubclass(domain.BadInput, domain.WorkflowError)


def _exit_code_mentions(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "exit_code":
            found.append(f"{path}:{node.lineno}")
        elif isinstance(node, ast.Attribute) and node.attr == "exit_code":
            found.append(f"{path}:{node.lineno}")
        elif isinstance(node, ast.Constant) and node.value == "exit_code":
            found.append(f"{path}:{node.lineno}")
    return found


def test_no_exit_codes_below_the_cli():
    """Exit codes only in tools/cli: nothing in issuance/ or card/ names an exit_code."""
    found = [hit for top in ("issuance", "card") for path in sorted((ROOT / top).rglob("*.py"))
             for hit in _exit_code_mentions(path)]
    assert found == []


# --- CliFail ------------------------------------------------------------------------------------

def test_clifail_is_one_escaped_line_with_its_prog_and_code():
    @click.command()
    def boom():
        raise CliFail("first\x1b[31m line\nsecond line", ExitCode.BUSY, prog="mynaemu issue")

    result = CliRunner().invoke(boom, [])
    assert result.exit_code == 4
    assert result.output == "mynaemu issue: first\\u001b[31m line\n"


def test_a_subclass_fixes_its_prog():
    class KioskLike(CliFail):
        prog = "mynaemu kiosk"

    @click.command()
    def boom():
        raise KioskLike("refused [pin-wrong]: 2 tries left", 3)

    result = CliRunner().invoke(boom, [])
    assert (result.exit_code, result.output) == (3, "mynaemu kiosk: refused [pin-wrong]: 2 tries left\n")
    assert CliFail("x").exit_code == 1 and CliFail("x").prog == "mynaemu"


def test_issue_help_lists_the_codes_of_its_scope():
    text = CliRunner().invoke(main, ["issue", "--help"]).output
    listed = [int(m) for m in re.findall(r"^\s+(\d)\s+\S", text.split("Exit codes:")[1], re.M)]
    assert listed == [int(c) for c, (scope, _) in EXIT_MEANINGS.items() if scope in ("all", "issue")]


def test_batch_failures_keep_their_exit_code_field(tmp_path, issue_staff):
    """`issue generate --workers` prints batch.py's failures with an exit_code the CLI computed
    from their kind (the JSON is as before)."""
    env = {"MYNAEMU_HOME": str(tmp_path / "home"), "MYNAEMU_OPERATOR": "op", "MYNAEMU_TERMINAL": "t"}
    issue_staff(tmp_path / "home", staff_id="op")   # every issue command authenticates (issue 13)
    runner = CliRunner()
    applied = runner.invoke(main, ["issue", "apply", "--name", "番号\u3000花子", "--birth", "1990-04-02",
                                   "--sex", "2", "--address", "東京都清瀬市試験町１丁目", "--alt-unconfirmed",
                                   "--at", "2026-05-01T09:00", "--json"], env=env)
    assert applied.exit_code == 0, applied.output
    app_id = json.loads(applied.stdout)["id"]
    result = runner.invoke(main, ["issue", "generate", "--workers", "1", "--at", "2026-05-02T10:00", "--json"],
                           env=env)
    doc = json.loads(result.stdout)
    assert doc["generated"] == []
    assert doc["failed"] == [{"id": app_id, "error": doc["failed"][0]["error"], "exit_code": 1}]
    assert "FLOW-3" in doc["failed"][0]["error"]
    assert result.exit_code == 1
