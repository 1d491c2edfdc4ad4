"""`mynaemu card info FILE --json`: typed, structured, secrets masked unless --reveal (toolkit item 4)."""
import json

import pytest
from click.testing import CliRunner
from cryptography import x509

from mynaemu.card.image import CardImage
from mynaemu.tools.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    out = {}
    directory = tmp_path_factory.mktemp("cards")
    for persona in ("adult", "auth-locked", "sign-1-left", "under15"):
        path = directory / f"{persona}.json"
        assert run("card", "create", "--persona", persona, "-o", path, "--seed", "1").exit_code == 0
        out[persona] = path
    return out


def info(path, *extra):
    result = run("card", "info", path, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def pin(doc, ap, fid):
    (found,) = [p for p in doc["pins"] if p["ap"] == ap and p["fid"] == fid]
    return found


def test_structure_and_types(cards):
    doc = info(cards["adult"])
    image = CardImage.load(cards["adult"])
    assert doc["token"] == "JPKIAPICCTOKEN2"
    assert doc["atr"] == {"profile": image.atr, "hex": image.atr_bytes.hex().upper()}
    assert {a["name"] for a in doc["applications"]} >= {"jpki", "kenhojo", "kenkaku", "juki", "common"}
    jpki = next(a for a in doc["applications"] if a["name"] == "jpki")
    assert jpki["aid"] == "D392F000260100000001" and jpki["efs"]["pin"] == 2
    for p in doc["pins"]:
        assert set(p) == {"ap", "fid", "name", "tries_left", "max_tries", "blocked"}
        assert type(p["tries_left"]) is int and type(p["max_tries"]) is int and type(p["blocked"]) is bool
    assert pin(doc, "jpki", "0018") == {"ap": "jpki", "fid": "0018", "name": "利用者証明用暗証番号",
                                        "tries_left": 3, "max_tries": 3, "blocked": False}
    assert pin(doc, "jpki", "001B")["max_tries"] == 5
    auth = next(c for c in doc["certificates"] if c["kind"] == "auth")
    der = image.application("jpki").efs[0x000A].data
    cert = x509.load_der_x509_certificate(der[:auth["size"]] if len(der) == auth["size"] else der)
    assert auth["serial"] == f"{cert.serial_number:X}" == image.meta["auth_serial"]
    assert auth["subject"] == cert.subject.rfc4514_string()
    assert auth["not_after"].startswith(f"{cert.not_valid_after_utc:%Y-%m-%d}")
    assert {c["kind"] for c in doc["certificates"]} == {"auth", "sign", "auth CA", "sign CA"}


def test_secrets_hidden_unless_revealed(cards):
    image = CardImage.load(cards["adult"])
    number = image.meta["individual_number"]
    hidden = run("card", "info", cards["adult"], "--json").stdout
    assert number not in hidden and '"1234"' not in hidden and "ABC123" not in hidden
    doc = json.loads(hidden)
    assert doc["holder"]["individual_number"] == "*" * 8 + number[-4:]
    assert "birth" not in doc["holder"] and "address" not in doc["holder"]
    shown = info(cards["adult"], "--reveal")
    assert shown["holder"]["individual_number"] == number
    assert shown["holder"]["birth"].count("-") == 2 and shown["holder"]["address"]
    assert pin(shown, "jpki", "001B")["value"] == "ABC123"


@pytest.mark.parametrize("persona, ap, fid, left, blocked", [
    ("auth-locked", "jpki", "0018", 0, True),
    ("sign-1-left", "jpki", "001B", 1, False),
])
def test_pin_states_of_personas(cards, persona, ap, fid, left, blocked):
    p = pin(info(cards[persona]), ap, fid)
    assert p["tries_left"] == left and p["blocked"] is blocked


def test_under15_has_no_signing_certificate(cards):
    kinds = {c["kind"]: c for c in info(cards["under15"])["certificates"]}
    assert "auth" in kinds and "subject" in kinds["auth"]
    assert "subject" not in kinds.get("sign", {})


def test_broken_image_is_one_line_exit_1(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run("card", "info", bad, "--json")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
