"""EFs that exist though their use is unknown (§13.3), and options.unknown_ef_sw."""
from __future__ import annotations

import copy
import json

import pytest

from mynaemu.card.core import Card
from mynaemu.card.image import CardImage, CardImageError, OpaqueEF
from mynaemu.issuance.personas import build_persona

KENHOJO = "00A4040C0AD3921000310001010408"
KENKAKU = "00A4040C0AD3921000310001010402"
UNKNOWN = {KENHOJO: (0x0010, 0x001C, 0x001E), KENKAKU: (0x001C, 0x001E)}


@pytest.fixture(scope="module")
def adult():
    return build_persona("adult", seed=0)[0]


def tx(card, hexstr):
    r = card.transmit(bytes.fromhex(hexstr))
    return r[:-2], r[-2:].hex().upper()


@pytest.mark.parametrize("sw", ["6981", "6982", "6985", "6986"])
def test_unknown_efs_select_and_refuse_content_with_the_option(adult, sw):
    image = copy.deepcopy(adult)
    image.options.unknown_ef_sw = sw
    card = Card(image)
    card.power_on()
    for select, fids in UNKNOWN.items():
        assert tx(card, select)[1] == "9000"
        for fid in fids:
            assert tx(card, f"00A4020C02{fid:04X}")[1] == "9000"
            assert tx(card, "00B0000000") == (b"", sw)
            assert tx(card, "00B2010400") == (b"", sw)
            assert tx(card, f"00B0{0x80 | fid:02X}0000") == (b"", sw)              # SFI form
            assert tx(card, f"00B201{(fid << 3) | 4:02X}00") == (b"", sw)
            assert tx(card, f"00A4020C02{fid:04X}")[1] == "9000"
            assert tx(card, "0020008004" + "31323334")[1] == "6981"   # not a PIN
            assert tx(card, "802A008033" + "00" * 51 + "00")[1] == "6981"  # not a key
        # the neighbours that do not exist still say 6A82
        assert tx(card, "00A4020C02001D")[1] == "6A82"


def test_default_and_json(adult, tmp_path):
    assert adult.options.unknown_ef_sw == "6981"
    doc = adult.to_json()
    hojo = next(a for a in doc["applications"] if a["name"] == "kenhojo")
    assert {"fid": "001C", "type": "opaque", "label": "exists, purpose unknown (§13.3)"} in hojo["efs"]
    back = CardImage.from_json(json.loads(json.dumps(doc)))
    assert isinstance(back.application("kenkaku").efs[0x001E], OpaqueEF)
    bad = json.loads(json.dumps(doc))
    bad["options"]["unknown_ef_sw"] = "9000"
    with pytest.raises(CardImageError, match="unknown_ef_sw"):
        CardImage.from_json(bad)
    older = json.loads(json.dumps(doc))
    del older["options"]["unknown_ef_sw"]                      # images made before the option
    assert CardImage.from_json(older).options.unknown_ef_sw == "6981"
