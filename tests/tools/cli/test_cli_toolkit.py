"""`mynaemu --version`, `python -m mynaemu`, `--json` on the card commands that print data."""
import json
import subprocess
import sys
from importlib.metadata import version

from click.testing import CliRunner

from mynaemu.tools.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"mynaemu, version {version('mynaemu')}"


def test_python_dash_m_mynaemu_is_the_cli(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mynaemu", "--version"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("mynaemu, version ")
    done = subprocess.run([sys.executable, "-m", "mynaemu", "card", "nope"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("mynaemu card") and "nope" in done.stderr


def test_personas_json():
    doc = json.loads(run("card", "personas", "--json").stdout)
    assert {p["name"] for p in doc["personas"]} >= {"adult", "under15", "auth-locked"}
    assert doc["pins"]["sign"] == "ABC123"


def test_create_and_apdu_json(tmp_path):
    path = tmp_path / "c.json"
    doc = json.loads(run("card", "create", "--persona", "adult", "-o", path, "--seed", "2", "--json").stdout)
    assert doc["file"] == str(path) and doc["persona"] == "adult" and doc["card_expires"][:2] == "20"
    result = run("card", "apdu", path, "00A4040C0AD392F000260100000001", "00A4020C020018",
                 "0020008004" + b"9999".hex(), "--json")
    answers = json.loads(result.stdout)
    assert [a["sw"] for a in answers] == ["9000", "9000", "63C2"]
    assert answers[2]["command"] == "0020008004********"       # the PIN never printed


def test_kiosk_enrol_json_on_a_card_of_the_myna_office(myna_office):
    card = myna_office.issue_card(name="試験\u3000次郎", sex="1")
    myna_office.close()
    result = CliRunner().invoke(main, ["kiosk", "enrol", "--card", str(card), "--pin-zei", "4321", "--json"],
                                env={"MYNAEMU_HOME": str(myna_office.home)})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["card"] == str(card) and doc["documents"] == ["zei"] and len(doc["municipality_code"]) == 5
