"""The terminal side of §13.2: CardClient.open_sm / tools/terminal/sm.py and `card sm-read`."""
from __future__ import annotations

import copy

import pytest
from click.testing import CliRunner

from mynaemu.card.core import Card
from mynaemu.issuance.personas import build_persona
from mynaemu.tools.cli import main
from mynaemu.tools.terminal.client import (
    CardClient, InProcessConnection, PinIncorrect, SecurityStatusNotSatisfied,
)
from mynaemu.tools.terminal.sm import SmSessionClosed


@pytest.fixture(scope="module")
def persona():
    return build_persona("adult", seed=0)


@pytest.fixture
def client(persona):
    card = Card(copy.deepcopy(persona[0]))
    return CardClient(InProcessConnection(card), trace=True)


def test_open_present_collation_a_and_read_under_sm(client, persona):
    image, info = persona
    session = client.open_sm(info.pins["kenhojo"])
    assert session.read_my_number(image.meta["individual_number"]) == info.identity.individual_number
    basic4 = session.read_basic4()
    assert (basic4["name"], basic4["address"], basic4["sex"]) == (
        info.identity.name, info.identity.address, info.identity.sex)
    assert basic4["birth"] == info.identity.birth
    assert session.counter == 3                        # VERIFY, READ 0001, READ 0002
    # whole EF, filler included, by file id and by offset/length
    assert session.read_binary(0x0001) == image.application("kenhojo").efs[0x0001].data
    assert session.read_binary(sfi=0x02, offset=3, length=4) == \
        image.application("kenhojo").efs[0x0002].data[3:7]
    # the trace never shows the number: SM data is ciphertext, VERIFY data redacted
    text = client.format_trace()
    assert info.identity.individual_number not in text
    assert info.identity.individual_number.encode().hex().upper() not in text.replace(" ", "")
    assert "08 20 00 94" in text and "80 AE 00 00 00 01 00" in text


def test_wrong_secrets_are_typed_errors_and_spend_tries(client, persona):
    image, info = persona
    pin = info.pins["kenhojo"]
    wrong = pin[:-1] + ("0" if pin[-1] != "0" else "1")
    with pytest.raises(PinIncorrect) as err:
        client.open_sm(wrong)
    assert err.value.tries_left == 2
    session = client.open_sm(pin)
    with pytest.raises(PinIncorrect) as err:
        session.read_my_number("000000000000")
    assert err.value.tries_left == 9
    assert client.conn.card.image.pin("kenhojo", 0x0014).remaining == 9
    assert session.read_basic4()["name"] == info.identity.name    # still in step after a refusal


def test_session_ended_by_the_card_is_reported(client, persona):
    session = client.open_sm(persona[1].pins["kenhojo"])
    client.select_ap("kenhojo")                        # an application SELECT ends the session
    with pytest.raises(SmSessionClosed, match="69FC"):
        session.read_basic4()
    with pytest.raises(SmSessionClosed):
        session.read_basic4()
    # a fixed key, so whether the mis-keyed block happens to unpad is decided once, not by luck
    session = client.open_sm(persona[1].pins["kenhojo"], random=lambda n: bytes(range(1, n + 1)))
    session.counter += 1                               # out of step: 6988, session destroyed
    with pytest.raises(SmSessionClosed, match="6988"):
        session.read_my_number(persona[1].identity.individual_number)
    with pytest.raises(SmSessionClosed):
        session.read_basic4()
    client.select_ap("jpki")
    with pytest.raises(SecurityStatusNotSatisfied):    # SET SESSION KEY on JPKI-AP: 6982
        from mynaemu.card.apdu import Command
        client._send(Command(0x80, 0xAE, 0, 0, bytes(256), None, True), "80AE")


def test_cli_sm_read(tmp_path, persona):
    image, info = persona
    path = tmp_path / "card.json"
    image.save(path)
    number = info.identity.individual_number
    run = CliRunner().invoke
    ok = run(main, ["card", "sm-read", str(path), "--pin", info.pins["kenhojo"],
                    "--collation-a", number])
    assert ok.exit_code == 0, ok.output
    assert f"個人番号: ********{number[-4:]}" in ok.output and number not in ok.output
    assert f"氏名: {info.identity.name}" in ok.output and "SM commands: 3" in ok.output
    shown = run(main, ["card", "sm-read", str(path), "--pin", info.pins["kenhojo"],
                       "--collation-a", number, "--reveal"])
    assert f"個人番号: {number}" in shown.output
    bad = run(main, ["card", "sm-read", str(path), "--pin", "0000"])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "VERIFY 0011" in bad.output
    missing = run(main, ["card", "sm-read", str(tmp_path / "nope.json"), "--pin", "1234"])
    assert missing.exit_code == 1 and missing.output.count("\n") == 1
