"""`mynaemu card script` and recording (issue: the tester's toolkit, items 1 and 2).

The runner is the one the conformance tests use (tools/terminal/script.py); here it is driven through the
CLI against personas and card images, and recorded sessions are replayed.
"""
import json
import os
import stat
from pathlib import Path
from tests.support import REPO

import pytest
from click.testing import CliRunner

from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.tools.cli import main
from mynaemu.tools.terminal.client import CardClient, InProcessConnection, PinIncorrect
from mynaemu.tools.terminal.record import Recorder

TRANSCRIPTS = REPO / "vectors" / "transcripts"

FAILING = """\
persona: adult
title: a wrong expectation on line 8
> 00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01
< 9000
> 00 A4 02 0C 02 00 18
< 9000
> 00 20 00 80 {len(AUTH_PIN):02X} {AUTH_PIN}
< 63C2
"""


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def card_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cards") / "adult.json"
    result = run("card", "create", "--persona", "adult", "-o", path, "--seed", "5")
    assert result.exit_code == 0, result.output
    return path


def test_scripts_of_real_clients_run_green_and_pins_are_redacted():
    files = [TRANSCRIPTS / n for n in ("pymyna.txt", "neg_pin_block.txt", "myna_rs_text_mynumber.txt")]
    result = run("card", "script", *files)
    assert result.exit_code == 0, result.output
    assert "every expectation held" in result.output
    verify_lines = [ln for ln in result.output.splitlines() if "> 00 20 00 80 0" in ln]
    assert verify_lines and all(ln.rstrip().endswith("****") for ln in verify_lines)
    assert "31 32 33 34" not in result.output        # the PIN 1234 in hex never shows


def test_a_failed_expectation_names_file_and_line_and_exits_1(tmp_path):
    script = tmp_path / "wrong.txt"
    script.write_text(FAILING, encoding="utf-8")
    result = run("card", "script", script)
    assert result.exit_code == 1
    assert f"{script}:8: expected SW 63C2, got 9000" in result.stderr and "(answer to line 7)" in result.stderr


def test_a_script_that_cannot_be_read_exits_2_before_any_card_is_used(tmp_path):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text(FAILING.replace("63C2", "9000"), encoding="utf-8")
    bad.write_text("persona: adult\n> 00A4\n", encoding="utf-8")
    result = run("card", "script", good, bad)
    assert result.exit_code == 2
    assert "bad.txt:2: command without a '<'" in result.stderr
    assert "> 00 A4" not in result.output           # nothing ran


def test_usage_errors():
    assert run("card", "script", TRANSCRIPTS / "pymyna.txt", "--persona", "nobody").exit_code == 2
    assert run("card", "script", TRANSCRIPTS / "pymyna.txt", "--persona", "adult",
               "--reader", "x").exit_code == 2
    assert run("card", "script", TRANSCRIPTS / "pymyna.txt", "--set", "lower=1").exit_code == 2


def test_card_image_runs_in_memory_and_the_file_is_not_changed(card_file):
    before = card_file.read_bytes()
    result = run("card", "script", TRANSCRIPTS / "neg_pin_block.txt", "--card", card_file)
    assert result.exit_code == 0, result.output + result.stderr
    assert card_file.read_bytes() == before          # the script blocked the auth PIN in memory only


def test_set_overrides_a_variable_and_the_answer_shows_it(card_file, tmp_path):
    script = tmp_path / "s.txt"
    script.write_text(FAILING.replace("63C2", "9000"), encoding="utf-8")
    assert run("card", "script", script, "--card", card_file).exit_code == 0
    result = run("card", "script", script, "--card", card_file, "--set", "AUTH_PIN=9999")
    assert result.exit_code == 1 and "expected SW 9000, got 63C2" in result.stderr


def test_json_lists_every_exchange_with_redaction(card_file, tmp_path):
    script = tmp_path / "wrong.txt"
    script.write_text(FAILING, encoding="utf-8")
    result = run("card", "script", TRANSCRIPTS / "pymyna.txt", script, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    first, second = doc["scripts"]
    assert first["ok"] and first["exchanges"] == len(first["steps"]) > 5 and first["error"] is None
    assert not second["ok"] and second["exchanges"] == 3
    assert second["steps"][2]["command"] == "00 20 00 80 04 ****" and second["steps"][2]["response"] == "9000"
    assert "answer to line 7" in second["error"]


# -- recording ------------------------------------------------------------------------------

def _session(path, record):
    """A client session: token, auth certificate, a signature, 個人番号, a wrong PIN, a challenge."""
    conn = InProcessConnection(Card.from_file(path), record=record)
    client = CardClient(conn)
    client.jpki_token()
    client.read_certificate("auth")
    client.jpki_sign("auth", b"\x30" * 51, "1234")
    number = client.read_my_number("1234")
    client.select_ap("jpki")
    with pytest.raises(PinIncorrect):
        client.verify(0x1B, "WRONG1")
    client.verify(0x1B, "ABC123")
    conn.reset(warm=False)
    client.get_challenge(8)
    conn.close()
    return number


def test_a_recorded_session_replays_green_and_holds_no_secret(card_file, tmp_path):
    copy = tmp_path / "card.json"
    copy.write_bytes(card_file.read_bytes())
    record = tmp_path / "session.txt"
    number = _session(copy, record)
    text = record.read_text(encoding="utf-8")
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o600
    assert "{AUTH_PIN}" in text and "{KENHOJO_PIN}" in text and "{SIGN_PIN}" in text
    assert "{MY_NUMBER}" in text and number.encode().hex().upper() not in text
    assert "31 32 33 34" not in text and "41 42 43 31 32 33" not in text   # 1234, ABC123
    assert "pkcs1=auth" in text and "@reset cold" in text and "len=8 9000" in text
    assert "57 52 4F 4E 47 31" in text and "63C4" in text                   # the wrong try, literally
    result = run("card", "script", record, "--card", copy)
    assert result.exit_code == 0, result.output + result.stderr


def test_a_recorded_script_catches_a_different_card(card_file, tmp_path):
    copy = tmp_path / "card.json"
    copy.write_bytes(card_file.read_bytes())
    record = tmp_path / "session.txt"
    _session(copy, record)
    other = tmp_path / "other.json"
    assert run("card", "create", "--persona", "adult", "-o", other, "--seed", "6").exit_code == 0
    result = run("card", "script", record, "--card", other)
    assert result.exit_code == 1 and "session.txt:" in result.stderr and "expected data" in result.stderr


def test_recording_refuses_a_symlink_or_fifo(card_file, tmp_path):
    image = CardImage.load(card_file)
    target = tmp_path / "victim"
    target.write_text("keep")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(OSError):
        Recorder.for_image(link, image, source="test")
    assert target.read_text() == "keep"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        Recorder.for_image(fifo, image, source="test")
