"""`mynaemu issue pin-reset` (暗証番号の初期化): exit codes 0/1/2/3/5 with one-line errors, --json,
the card file rewritten only on success, the counter's right (and nobody else's), and the new PIN
in no output, no log and no audit record."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance.staff.rights import ROLES
from mynaemu.issuance.store import make_form_id
from mynaemu.tools.cli import main
from tests.support.cli import run_issue as run
from tests.support.staff import PASSWORD, staff_account
from tests.support.store_rows import dump, last_audit

AT = "2026-05-20T10:00"
NEW_SIGN = "Z9PINRESETQ4"    # 12 characters found nowhere else
SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")


def new_card(tmp_path, n=0):
    """apply → generate → deliver through the CLI (the all-rights account op-cli); the card file."""
    person = ["--name", f"初期化\u3000{'太郎次郎'[n]}", "--birth", "1990-04-02", "--sex", "1",
              "--address", "東京都清瀬市試験町１丁目"]
    app_id = json.loads(run("apply", *person, "--at", "2026-05-01", "--json").stdout)["id"]
    run("generate", app_id, "--at", "2026-05-02T10:00")
    path = tmp_path / f"card-{n}.json"
    run("deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123", "--kenhojo-pin", "5678", "-o", str(path),
        "--at", "2026-05-10T10:00")
    return app_id, path


def sw(card, apdu: bytes) -> str:
    return card.transmit(apdu)[-2:].hex().upper()


def verify_auth(path, pin: str) -> str:
    """VERIFY the auth PIN 0018 of the card file (saved back: a try spent stays spent)."""
    image = CardImage.load(path)
    card = Card(image)
    card.power_on()
    assert sw(card, SELECT_JPKI) == "9000" and sw(card, bytes.fromhex("00A4020C020018")) == "9000"
    answer = sw(card, bytes.fromhex("00200080") + bytes([len(pin)]) + pin.encode())
    image.save(path)
    return answer


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mynaemu issue: ")
    return lines[0]


def staged(path):
    return sorted(path.parent.glob(f".{path.name}.staged-*"))


def test_a_blocked_auth_pin_is_reset_text_output(home, tmp_path):
    app_id, path = new_card(tmp_path)
    assert [verify_auth(path, "0000") for _ in range(3)] == ["63C2", "63C1", "63C0"]
    assert verify_auth(path, "1234") == "6984"
    r = run("pin-reset", app_id, "--card", path, "--pin", "auth", "--new-pin", "8642", "--at", AT)
    assert r.stdout.splitlines() == [f"{path}: auth PIN of card {app_id} reset (3 tries)"]
    assert "8642" not in r.stdout + r.stderr
    assert verify_auth(path, "8642") == "9000"
    assert verify_auth(path, "0000") == "63C2"
    assert staged(path) == []
    record = last_audit(home)
    assert (record["operator"], record["operation"], record["target"], record["outcome"]) == \
        ("op-cli", "pin-reset", app_id, "ok")
    detail = json.loads(record["detail"])
    assert detail["pin"] == "auth" and "暗証番号初期化申請書" in detail["identity_check"]


def test_json_names_the_pin_never_its_value_and_the_identity_check_is_audited(home, tmp_path):
    app_id, path = new_card(tmp_path)
    r = run("pin-reset", app_id, "--card", path, "--pin", "sign", "--new-pin", NEW_SIGN, "--at", AT, "--json",
            "--identity-check", "運転免許証 + 暗証番号初期化申請書")
    assert json.loads(r.stdout) == {"id": app_id, "card": str(path), "pin": "sign", "retries": 5}
    assert NEW_SIGN not in r.stdout + r.stderr
    assert json.loads(last_audit(home)["detail"])["identity_check"] == "運転免許証 + 暗証番号初期化申請書"
    assert CardImage.load(path).pin("jpki", 0x001B).value == NEW_SIGN.encode()
    # nowhere in the store: no table, and not in the raw bytes of the store's files
    assert NEW_SIGN not in json.dumps(dump(home), ensure_ascii=False, default=str)
    for p in home.rglob("*"):
        if p.is_file():
            assert NEW_SIGN.encode() not in p.read_bytes(), p


def test_nothing_in_the_log_at_the_most_verbose_level(home, tmp_path):
    """A real process with -vv (debug logging on stderr): the new PIN is not in any output."""
    app_id, path = new_card(tmp_path)
    done = subprocess.run([sys.executable, "-m", "mynaemu.tools.cli", "-vv", "issue", "pin-reset", app_id, "--card",
                           str(path), "--pin", "sign", "--new-pin", NEW_SIGN, "--at", AT],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert NEW_SIGN not in done.stdout + done.stderr
    assert CardImage.load(path).pin("jpki", 0x001B).value == NEW_SIGN.encode()


def _refused(home, path, args, code):
    before_card, before_store = path.read_bytes(), dump(home)
    r = run("pin-reset", *args, "--at", AT, code=code)
    line = one_line(r)
    assert path.read_bytes() == before_card and staged(path) == []
    after = dump(home)
    assert {k: v for k, v in after.items() if not k.startswith("audit")} == \
        {k: v for k, v in before_store.items() if not k.startswith("audit")}
    return line


def test_refusals_exit_1_with_one_line(home, tmp_path):
    app_id, path = new_card(tmp_path, 0)
    other, other_path = new_card(tmp_path, 1)
    # another holder's card
    line = _refused(home, path, [app_id, "--card", other_path, "--pin", "auth", "--new-pin", "8642"], 1)
    assert f"belongs to '{other}', not {app_id}" in line and "8642" not in line
    assert last_audit(home)["outcome"] == "refused"
    # a suspended card: released at the counter first
    run("suspend", app_id, "--at", "2026-05-15T10:00")
    line = _refused(home, path, [app_id, "--card", path, "--pin", "auth", "--new-pin", "8642"], 1)
    assert line.endswith("is suspended (一時停止); release it at the counter first (FLOW-SUSP-3)")
    # a file that is not a card
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    _refused(home, junk, [other, "--card", junk, "--pin", "auth", "--new-pin", "8642"], 1)


@pytest.mark.parametrize("args", [
    ["--pin", "auth", "--new-pin", "12a4"],
    ["--pin", "sign", "--new-pin", "abc123"],
    ["--pin", "juki", "--new-pin", "12345"],
    ["--pin", "jorei", "--new-pin", "1234"],
    ["--pin", "auth"],
    ["--pin", "auth", "--new-pin", "1234", "--identity-check", "x\x1b[2Jy"],
])
def test_bad_arguments_exit_2_with_one_line(home, tmp_path, args):
    app_id, path = new_card(tmp_path)
    line = _refused(home, path, [app_id, "--card", path, *args], 2)
    if "--new-pin" in args:
        assert args[args.index("--new-pin") + 1] not in line   # the rejected value is not echoed


def test_unknown_id_exits_3(home, tmp_path):
    _, path = new_card(tmp_path)
    line = _refused(home, path, [make_form_id(), "--card", path, "--pin", "auth", "--new-pin", "8642"], 3)
    assert "no application" in line


def test_only_the_counter_may_reset_a_pin(home, tmp_path):
    """vectors/staff/rights.csv row pin-reset: counter only. The others exit 5, audited, nothing
    changed; the counter's account resets the PIN for real."""
    app_id, path = new_card(tmp_path)
    for role in ROLES:
        staff_account(home, staff_id=f"p-{role}", rights=[role])
    env = {"MYNAEMU_HOME": str(home), "MYNAEMU_PASSWORD": PASSWORD, "MYNAEMU_DB": None, "MYNAEMU_TERMINAL": None}
    args = ["issue", "pin-reset", app_id, "--card", str(path), "--pin", "auth", "--new-pin", "8642", "--at", AT]
    for role in ROLES:
        if role == "counter":
            continue
        before_card, before_store = path.read_bytes(), dump(home)
        r = CliRunner().invoke(main, args, env={**env, "MYNAEMU_OPERATOR": f"p-{role}"}, catch_exceptions=False)
        assert r.exit_code == 5, (role, r.stderr)
        assert "holds no role" in one_line(r)
        assert path.read_bytes() == before_card
        after = dump(home)
        assert len(after["audit"]) == len(before_store["audit"]) + 1
        record = last_audit(home)
        assert (record["operator"], record["operation"], record["outcome"]) == (f"p-{role}", "pin-reset", "refused")
    r = CliRunner().invoke(main, args + ["--json"], env={**env, "MYNAEMU_OPERATOR": "p-counter"},
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["pin"] == "auth"
    assert last_audit(home)["operator"] == "p-counter"
    assert verify_auth(path, "8642") == "9000"


def test_the_help_says_what_it_does_and_the_default_identity_check_is_the_steps():
    from mynaemu.issuance.lifecycle.steps_pins import DEFAULT_IDENTITY_CHECK
    from mynaemu.tools.cli import issue_pins

    assert issue_pins.DEFAULT_IDENTITY_CHECK == DEFAULT_IDENTITY_CHECK
    r = CliRunner().invoke(main, ["issue", "pin-reset", "--help"])
    assert r.exit_code == 0
    assert "暗証番号の初期化" in r.stdout and "retry counter" in r.stdout
    assert "pin-reset" in CliRunner().invoke(main, ["issue", "--help"]).stdout


def test_killed_after_commit_the_next_command_publishes_the_reset_over_the_holders_use(home, tmp_path):
    """kill -9 right after COMMIT (cardwrite.py fault injection), then the holder uses the old file
    (a wrong 入力補助 PIN try), then `issue status` finishes the write: the reset PIN is the new
    one with its full counter (the old file's blocked value is not merged back), and the try the
    holder spent on the other PIN stays spent."""
    app_id, path = new_card(tmp_path)
    assert [verify_auth(path, "0000") for _ in range(3)][-1] == "63C0"
    env = {**os.environ, "MYNAEMU_TEST_KILL_AT": "after-commit"}
    done = subprocess.run([sys.executable, "-m", "mynaemu.tools.cli", "issue", "pin-reset", app_id, "--card",
                           str(path), "--pin", "auth", "--new-pin", "8642", "--at", AT],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 137, done.stderr
    assert len(staged(path)) == 1 and CardImage.load(path).pin("jpki", 0x0018).remaining == 0
    image = CardImage.load(path)                 # the holder's software uses the old file meanwhile
    card = Card(image)
    card.power_on()
    assert sw(card, bytes.fromhex("00A4040C0AD3921000310001010408")) == "9000"
    assert sw(card, bytes.fromhex("00A4020C020011")) == "9000"
    assert sw(card, bytes.fromhex("0020008004") + b"0000") == "63C2"
    image.save(path)
    run("status", app_id, "--at", AT)            # any command finishes the committed write
    assert staged(path) == []
    after = CardImage.load(path)
    assert (after.pin("jpki", 0x0018).remaining, after.pin("kenhojo", 0x0011).remaining) == (3, 2)
    assert verify_auth(path, "8642") == "9000"
