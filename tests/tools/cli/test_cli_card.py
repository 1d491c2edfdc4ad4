"""`mynaemu card …`: create, info, apdu; bad arguments and broken images (issue: card, item 7/8)."""
import json

import pytest
from click.testing import CliRunner

from mynaemu.card.image import CardImage
from mynaemu.tools.cli import main

SELECT_J = "00A4040C0AD392F000260100000001"


@pytest.fixture(scope="module")
def card_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cards") / "adult.json"
    result = CliRunner().invoke(main, ["card", "create", "--persona", "adult", "-o", str(path), "--seed", "3"])
    assert result.exit_code == 0, result.output
    return path


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_personas_lists_every_persona():
    out = run("card", "personas").output
    for name in ("adult", "under15", "auth-locked", "sign-1-left", "kenkaku-b-locked"):
        assert name in out
    assert "ABC123" in out


def test_create_refuses_to_overwrite(card_file):
    before = card_file.read_bytes()
    result = run("card", "create", "--persona", "adult", "-o", str(card_file))
    assert result.exit_code == 1 and "exists" in result.output
    assert card_file.read_bytes() == before


def test_create_unknown_persona_is_usage_error(tmp_path):
    result = run("card", "create", "--persona", "nobody", "-o", str(tmp_path / "x.json"))
    assert result.exit_code == 2 and "unknown persona" in result.output
    assert not (tmp_path / "x.json").exists()


def test_info_hides_secrets_unless_revealed(card_file):
    image = CardImage.load(card_file)
    number = image.meta["individual_number"]
    out = run("card", "info", str(card_file)).output
    assert number not in out and number[-4:] in out and "value=" not in out
    out = run("card", "info", str(card_file), "--reveal").output
    assert number in out and "value=1234" in out
    doc = json.loads(run("card", "info", str(card_file), "--json").output)
    assert doc["individual_number"].startswith("****")


def test_apdu_prints_data_and_sw_and_persists_pin_state(card_file, tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(card_file.read_bytes())
    result = run("card", "apdu", str(path), SELECT_J, "00A4020C020006", "00B0000020",
                 "00A4020C020018", "0020008004" + b"0000".hex())
    lines = result.output.split()
    assert result.exit_code == 0
    assert lines[0] == "9000" and lines[1] == "9000"
    assert bytes.fromhex(lines[2]).startswith(b"JPKIAPICCTOKEN2") and lines[3] == "9000"
    assert lines[-1] == "63C2"
    assert CardImage.load(path).pin("jpki", 0x18).remaining == 2          # written to the file
    result = run("card", "apdu", str(path), SELECT_J, "00A4020C020018", "00200080")
    assert result.output.split()[-1] == "63C2"


@pytest.mark.parametrize("bad", ["zz", "", "0"])
def test_apdu_rejects_bad_hex(card_file, bad):
    result = run("card", "apdu", str(card_file), bad)
    assert result.exit_code == 2


@pytest.mark.parametrize("mangle", [
    lambda raw: raw[: len(raw) // 2],                                   # truncated
    lambda raw: b"\x00garbage" + raw,                                   # corrupt
    lambda raw: raw.replace(b'"version": 1', b'"version": 99'),          # future version
    lambda raw: raw.replace(b'"max_tries": 3', b'"max_tries": "x"', 1),  # bad field
    lambda raw: raw.replace(b'"read": "free"', b'"read": ["7777"]', 1),  # dangling access rule
])
def test_broken_image_is_one_line_error_and_untouched(card_file, tmp_path, mangle):
    path = tmp_path / "broken.json"
    raw = mangle(card_file.read_bytes())
    path.write_bytes(raw)
    for args in (["card", "apdu", str(path), SELECT_J], ["card", "info", str(path)]):
        result = run(*args)
        assert result.exit_code == 1
        assert result.output.count("\n") == 1 and str(path) in result.output
    assert path.read_bytes() == raw
