"""`mynaemu kiosk`'s exit codes: the CLI's own table from refusal class to code (tools/cli/kiosk.py
EXIT_CODES), checked cell by cell against vectors/kiosk/refusals.csv, and what --help says."""
from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from mynaemu.issuance.kiosk.wire import REASONS, Refusal, RefusalClass
from mynaemu.tools.cli import main
from mynaemu.tools.cli.errors import KIOSK_CODES
from mynaemu.tools.cli.kiosk import EXIT_CLASSES, EXIT_CODES, exit_code
from tests.support import REPO

with (REPO / "vectors" / "kiosk" / "refusals.csv").open(encoding="utf-8", newline="") as _f:
    ROWS = list(csv.DictReader(_f))


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row["reason"])
def test_exit_code_of_each_reason(row):
    assert exit_code(Refusal(row["reason"], "x")) == int(row["exit_code"])
    assert exit_code(RefusalClass[row["class"]]) == int(row["exit_code"])


def test_one_code_per_class_none_of_them_taken_by_the_cli_itself():
    assert set(EXIT_CODES) == set(RefusalClass) == set(REASONS.values())
    codes = [code for code, _meaning in EXIT_CODES.values()]
    assert len(codes) == len(set(codes))
    assert not set(codes) & {0, 1, 2}           # issued, other failure, bad usage
    assert set(codes) == set(KIOSK_CODES)       # the range the CLI's one table reserves for the kiosk
    assert EXIT_CLASSES == {code: meaning for code, meaning in EXIT_CODES.values()}


@pytest.mark.parametrize("args", [["kiosk", "--help"], ["kiosk", "issue", "--help"]])
def test_help_lists_every_code_with_its_meaning(args):
    result = CliRunner().invoke(main, args, terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for code, meaning in sorted(EXIT_CLASSES.items()):
        assert f"{code} {meaning};" in text
