"""Lazy subcommands (tools/cli/groups.py): `mynaemu card apdu` loads neither the kiosk nor
reportlab nor pyhanko, and every help lists every group and command as it did."""
from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from mynaemu.tools.cli import LAZY_CARD, LAZY_MAIN
from mynaemu.tools.cli.issue import LAZY_ISSUE

HEAVY = ("mynaemu.issuance.kiosk", "mynaemu.tools.cli.kiosk", "reportlab", "pyhanko")

# Runs the CLI in a fresh interpreter and reports the modules it loaded.
PROBE = """
import json, sys
from mynaemu.tools.cli import main
preload = json.loads(sys.argv[1])
if preload:
    import importlib
    from mynaemu.tools.cli import LAZY_CARD, LAZY_MAIN
    from mynaemu.tools.cli.issue import LAZY_ISSUE
    for table in (LAZY_MAIN, LAZY_CARD, LAZY_ISSUE):
        for target in table.values():
            importlib.import_module(target.partition(":")[0])
try:
    main(sys.argv[2:], prog_name="mynaemu")
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def probe(*args: str, preload: bool = False) -> tuple[str, dict]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(preload), *args], capture_output=True,
                          text=True, timeout=120)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return proc.stdout, report


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.fixture(scope="module")
def card_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lazy") / "adult.card.json"
    out, report = probe("card", "create", "--persona", "adult", "-o", str(path), "--seed", "1")
    assert report["code"] == 0, out
    return path


def test_card_apdu_loads_neither_the_kiosk_nor_reportlab_nor_pyhanko(card_file):
    out, report = probe("card", "apdu", str(card_file), "00A4040C0AD3921000310001010401")
    assert report["code"] == 0 and out == "9000\n"
    assert heavy(report["modules"]) == []
    assert "mynaemu.tools.cli.issue" not in report["modules"]


def test_the_probe_sees_the_heavy_modules_when_they_are_used():
    """The check above is not vacuous: the kiosk's help does load the kiosk."""
    _, report = probe("kiosk", "--help")
    assert report["code"] == 0
    assert "mynaemu.tools.cli.kiosk" in report["modules"] and "mynaemu.issuance.kiosk.wire" in report["modules"]


@pytest.mark.parametrize("args", [["--help"], ["card", "--help"], ["issue", "--help"]])
def test_help_is_the_same_lazy_or_loaded(args):
    lazy, lazy_report = probe(*args)
    loaded, loaded_report = probe(*args, preload=True)
    assert lazy_report["code"] == loaded_report["code"] == 0
    assert lazy == loaded


def test_top_help_lists_every_group():
    out, _ = probe("--help")
    commands = out.split("Commands:")[1].split()
    for name in ("card", "demo", "issue", "kiosk"):
        assert name in commands


@pytest.mark.parametrize("table, name, target", [
    (table, name, target) for table in (LAZY_MAIN, LAZY_CARD, LAZY_ISSUE) for name, target in table.items()])
def test_each_lazy_entry_names_a_command_of_that_name(table, name, target):
    import importlib

    module, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command) and command.name == name


def test_unknown_command_is_still_one_line():
    out, report = probe("card", "nope")
    assert report["code"] == 2


def test_the_package_names_stay_the_submodules():
    """Loading a lazy group binds no group in the package: mynaemu.tools.cli.issue and .kiosk are
    the modules (a group of the same name used to shadow them)."""
    import types

    from click.testing import CliRunner

    import mynaemu.tools.cli as package
    from mynaemu.tools.cli import main

    for args in (["issue", "--help"], ["kiosk", "--help"], ["demo", "--help"]):
        assert CliRunner().invoke(main, args).exit_code == 0
    from mynaemu.tools.cli import issue, kiosk

    assert isinstance(issue, types.ModuleType) and isinstance(kiosk, types.ModuleType)
    assert package.issue is issue and package.kiosk is kiosk
