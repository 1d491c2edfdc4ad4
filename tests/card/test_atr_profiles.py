"""ATR profiles (card-interface.md §1.2, §13.3): bytes as the record has them, TCK checked,
chosen at `card create --atr NAME`, overridable per session as `card serve --atr NAME` does."""
import functools

import pytest
from click.testing import CliRunner

from mynaemu.card import atr
from mynaemu.card.core import Card
from mynaemu.card.image import ATR_PROFILES, CardImage, CardImageError
from mynaemu.tools.cli import main

# §1.2, written out again here so a typo in card/atr.py cannot pass unnoticed.
EXPECTED = {
    "contact": "3BE000FF8131FE4514",
    "contactless": "3B888001000041E0B381A1003B",
    "contact-alt": "3BDA13FF8131FB468012392F31C173C601C03B",
    "contact-03": "3BC5FF8131FB458073C6010000",
    "contact-04": "3BF59100FF918171FE400042000100D1D6",
    "contact-05": "3BF59100FF918171FE4000420001B3A115",
    "contactless-jgid": "3B888001000005E0B381A1007F",
    "contactless-08": "3B888001004B51FF0081D100BC",
    "contactless-09": "3B888001004B51FFB381D1000F",
}


def xor_t0_to_tck(raw: bytes) -> int:
    return functools.reduce(lambda a, b: a ^ b, raw[1:], 0)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_profile_bytes_and_tck(name):
    raw = ATR_PROFILES[name]
    assert raw.hex().upper() == EXPECTED[name]
    assert xor_t0_to_tck(raw) == 0                      # ISO/IEC 7816-3 §8.2.5: T0 .. TCK XOR to 00
    parsed = atr.parse(raw)
    assert parsed.tck == raw[-1] and 1 in parsed.protocols
    assert atr.PROFILES[name].source                    # every profile says where it comes from


def test_the_required_presets_and_the_alternative_chip():
    # §1.2: at least "contact" and "contactless"; §13.3 the alternative chip
    assert ATR_PROFILES["contact"] == bytes.fromhex("3B E0 00 FF 81 31 FE 45 14")
    assert ATR_PROFILES["contactless"] == bytes.fromhex("3B 88 80 01 00 00 41 E0 B3 81 A1 00 3B")
    assert ATR_PROFILES["contact-alt"] == bytes.fromhex(
        "3B DA 13 FF 81 31 FB 46 80 12 39 2F 31 C1 73 C6 01 C0 3B")


def test_contact_atr_decodes_as_the_spec_says():
    p = atr.parse(ATR_PROFILES["contact"])
    # §1.2: TB1=00, TC1=FF, TD1=81 (T=1), TD2=31, TA3=FE (IFSC 254), TB3=45, no historical bytes
    assert p.interface_bytes == {("TB", 1): 0x00, ("TC", 1): 0xFF, ("TD", 1): 0x81, ("TD", 2): 0x31,
                                 ("TA", 3): 0xFE, ("TB", 3): 0x45}
    assert p.historical == b"" and p.tck == 0x14


@pytest.mark.parametrize("name, hist", [("contactless", "000041E0B381A100"),
                                        ("contactless-jgid", "000005E0B381A100")])
def test_contactless_historical_bytes_hpki_recognises(name, hist):
    assert atr.parse(ATR_PROFILES[name]).historical.hex().upper() == hist


@pytest.mark.parametrize("bad, message", [
    ("3BE000FF8131FE4515", "TCK"),                     # last byte changed
    ("3BE000FF8131FE45", "TCK"),                       # TCK missing
    ("3B88800100", "historical"),                      # fewer historical bytes than announced
    ("3BE000", "interface"),
    ("00E000FF8131FE4514", "TS"),
])
def test_parser_refuses_broken_atrs(bad, message):
    with pytest.raises(atr.ATRError, match=message):
        atr.parse(bytes.fromhex(bad))


@pytest.mark.parametrize("name", ["contact-alt", "contactless", "contact-04"])
def test_card_create_atr_sets_the_atr_and_get_data_5f51(tmp_path, name):
    out = tmp_path / "c.json"
    result = CliRunner().invoke(main, ["card", "create", "--persona", "adult", "--seed", "3",
                                       "--atr", name, "-o", str(out)])
    assert result.exit_code == 0, result.output
    image = CardImage.load(out)
    assert image.atr == name
    card = Card(image)
    assert card.power_on() == ATR_PROFILES[name]
    resp = card.transmit(bytes.fromhex("00CA5F5100"))
    # §1.2: the chip's own contact ATR without TS (a contactless reader's ATR is not the chip's)
    assert resp == atr.contact_of(name)[1:] + b"\x90\x00"
    if atr.PROFILES[name].interface == "contactless":
        assert atr.contact_of(name) == ATR_PROFILES["contact"]
    else:
        assert atr.contact_of(name) == ATR_PROFILES[name]


def test_serve_override_changes_only_the_session(tmp_path):
    out = tmp_path / "c.json"
    assert CliRunner().invoke(main, ["card", "create", "--persona", "adult", "--seed", "3",
                                     "-o", str(out)]).exit_code == 0
    card = Card.from_file(out, atr="contactless")         # what `card serve --atr contactless` builds
    assert card.power_on() == ATR_PROFILES["contactless"]
    assert CardImage.load(out).atr == "contact"
    help_text = CliRunner().invoke(main, ["card", "serve", "--help"]).output
    for name in ("contact-alt", "contactless-jgid"):
        assert name in help_text


def test_unknown_profile_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["card", "create", "--persona", "adult", "--atr", "nfc",
                                       "-o", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "nfc" in result.output
    with pytest.raises(ValueError, match="unknown ATR profile"):
        atr.apply_profile(CardImage(applications=[]), "nfc")
    with pytest.raises(CardImageError, match="unknown ATR profile"):
        CardImage(applications=[], atr="nfc").atr_bytes
