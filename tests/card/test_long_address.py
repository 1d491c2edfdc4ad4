"""Long 基本4情報 (card-interface.md §13.4): a 住所 with building and room is issued, written in
BER long form in kenhojo EF 0002 with the §3.2 offsets and EF 0003 digests unchanged, drawn over
several lines in the 券面AP address image, and refused beyond the card-side limit in one line."""
import datetime as dt
import hashlib
import io
import json

import pytest
from click.testing import CliRunner
from cryptography import x509
from PIL import Image

from mynaemu.card import images, tlv
from mynaemu.card.apps import kenhojo, kenkaku
from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.card.limits import ADDRESS_MAX_CHARS, LimitError, check_address
from mynaemu.issuance.personas import PERSONAS, build_persona
from mynaemu.tools.cli import main

NAME = "見本\u3000花子"
BIRTH = dt.date(1990, 4, 1)
FW_DIGITS = "０１２３４５６７８９"


def _address(n: int) -> str:
    """A full-width address of exactly n characters (town, numbers, building, room)."""
    base = "東京都清瀬市試験町１丁目２番３号\u3000"
    filler = "試験レジデンスガーデンコート"
    text = base
    while len(text) < n:
        text += filler
    return text[:n - 4] + "１２号室"


@pytest.mark.parametrize("chars, header", [(20, "FF2065"), (40, "FF2081"), (80, "FF2082"),
                                            (ADDRESS_MAX_CHARS, "FF2082")])
def test_outer_length_form_follows_the_content(chars, header):
    address = _address(chars) if chars != 20 else "東京都清瀬市中里１丁目２番３号４５６"[:20]
    ef = kenhojo.encode_basic4(name=NAME, address=address, birth=BIRTH, sex="2", long_form=None)
    assert ef[:3].hex().upper() == header
    outer = tlv.decode_one(ef)
    assert outer.end == len(ef)                           # the length covers the file exactly
    if header == "FF2081":
        assert ef[3] + 4 == len(ef) and len(ef) - 4 >= 0x80
    elif header == "FF2082":
        assert int.from_bytes(ef[3:5], "big") + 5 == len(ef) and len(ef) - 5 >= 0x100
    parsed = kenhojo.parse_basic4(ef)
    assert parsed["address"] == address and parsed["name"] == NAME
    # §3.2: DF21 offsets count from the start of the file to each tag
    for off, tag in zip(parsed["offsets"], (0xDF22, 0xDF23, 0xDF24, 0xDF25)):
        assert ef[off:off + 2] == tag.to_bytes(2, "big")
    assert parsed["offsets"][0] == outer.header_len + 11
    # DF32 digests DF22 .. end of the outer value (no header, no offsets)
    assert kenhojo.basic4_signed_range(ef) == ef[parsed["offsets"][0]:]


def test_short_form_only_still_refuses_128_bytes():
    with pytest.raises(ValueError, match="long"):
        kenhojo.encode_basic4(name=NAME, address=_address(40), birth=BIRTH, sex="2")


@pytest.fixture(scope="module")
def persona():
    return build_persona("long-address", seed=0)


def test_long_address_persona(persona):
    image, info = persona
    address = info.identity.address
    assert len(address) >= 40 and all(ord(c) > 0x7F for c in address)
    ef1 = image.application("kenhojo").efs[kenhojo.EF_MY_NUMBER].data
    ef2 = image.application("kenhojo").efs[kenhojo.EF_BASIC4].data
    ef3 = image.application("kenhojo").efs[kenhojo.EF_INTEGRITY].data
    ef4 = image.application("kenhojo").efs[kenhojo.EF_CVC].data
    assert ef2[:3] == b"\xff\x20\x81" and ef2[3] > 127
    assert set(ef2[4 + ef2[3]:]) <= {0xFF}                               # §13.3 filler after the TLV
    assert kenhojo.parse_basic4(ef2)["address"] == address
    assert kenhojo.verify_integrity(ef1, ef2, ef3, ef4)
    # the DF32 value is SHA-256 of DF22..end, computed here independently of the module
    offsets = [int.from_bytes(ef2[7 + 2 * i:9 + 2 * i], "big") for i in range(4)]
    assert hashlib.sha256(ef2[offsets[0]:4 + ef2[3]]).digest() in ef3   # up to the end of the TLV
    # the signing certificate carries the whole address (§7.3 .5)
    cert = x509.load_der_x509_certificate(image.application("jpki").efs[0x0001].data)
    assert address.encode("utf-8") in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.public_bytes()


def test_long_address_persona_image_wraps_over_lines(persona):
    image, info = persona
    face = image.application("kenkaku").efs[0x0002].data
    assert kenkaku.verify_face(face, image.application("kenkaku").efs[0x0004].data)
    img = Image.open(io.BytesIO(kenkaku.parse_face(face)["address_image"]))
    lines = images.wrap_address(info.identity.address)
    assert len(lines) >= 3
    assert img.mode == "1" and img.height == len(lines) * images.ADDRESS_LINE_HEIGHT


def test_long_address_persona_through_the_card(persona):
    image, info = persona
    card = Card(image)
    card.power_on()
    for apdu in ("00A4040C0AD3921000310001010408", "00A4020C020011", "0020008004" + b"1234".hex(),
                 "00A4020C020002"):
        assert card.transmit(bytes.fromhex(apdu))[-2:] == b"\x90\x00"
    head = card.transmit(bytes.fromhex("00B0000007"))
    total = 4 + head[3]
    body = card.transmit(bytes.fromhex("00B00000") + bytes([total]))
    assert body[-2:] == b"\x90\x00" and len(body) - 2 == total
    assert kenhojo.parse_basic4(body[:-2])["address"] == info.identity.address


@pytest.mark.parametrize("address", [
    "東京都清瀬市中里１丁目２番地３\u3000サンプル荘４０５号室",
    "東京都千代田区霞が関二丁目１番２号\u3000中央合同庁舎第２号館\u3000試験レジデンス霞が関ウエストタワー１２３４号室",
    _address(ADDRESS_MAX_CHARS),
])
def test_wrap_keeps_units_and_loses_nothing(address):
    lines = images.wrap_address(address)
    assert all(1 <= len(line) <= images.ADDRESS_LINE_CHARS for line in lines)
    assert "".join(lines).replace("\u3000", "") == address.replace("\u3000", "")
    for a, b in zip(lines, lines[1:]):
        # no number is split across a line break, nor from its 番/号 unit
        assert not (a[-1] in FW_DIGITS and b[0] in FW_DIGITS)
        assert not (a[-1] in FW_DIGITS and b[0] in "番号丁")


def test_wrap_breaks_at_the_space_between_street_and_building():
    lines = images.wrap_address("東京都清瀬市中里１丁目２番地３\u3000サンプル荘４０５号室")
    assert lines == ["東京都清瀬市中里１丁目２番地３", "サンプル荘４０５号室"]


def test_card_side_limit_is_binding():
    assert check_address(_address(ADDRESS_MAX_CHARS)) == _address(ADDRESS_MAX_CHARS)
    with pytest.raises(LimitError, match=f"the limit is {ADDRESS_MAX_CHARS}.*ADDRESS_MAX_CHARS"):
        check_address(_address(ADDRESS_MAX_CHARS + 1))
    with pytest.raises(images.ImageInputError, match="ADDRESS_MAX_CHARS"):
        images.address_png(_address(ADDRESS_MAX_CHARS + 1), font_path=None)


def test_persona_is_listed():
    assert "long-address" in PERSONAS
    result = CliRunner().invoke(main, ["card", "personas"])
    assert result.exit_code == 0 and "long-address" in result.output


# -- the back office: issue apply/generate accept every address up to the limit ------------------

def _issue(*args):
    return CliRunner().invoke(main, ["issue", *args], catch_exceptions=False)


def test_issue_generate_and_deliver_a_200_character_address(home, tmp_path):
    address = _address(ADDRESS_MAX_CHARS)
    applied = _issue("apply", "--name", NAME, "--birth", "1990-04-01", "--sex", "2", "--address", address,
                     "--at", "2026-05-01", "--json")
    assert applied.exit_code == 0, applied.output
    app_id = json.loads(applied.stdout)["id"]
    gen = _issue("generate", app_id, "--at", "2026-05-02T10:00")
    assert gen.exit_code == 0, gen.output
    out = tmp_path / "long.json"
    done = _issue("deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123", "--kenhojo-pin", "1234",
                  "-o", str(out), "--at", "2026-05-10T10:00")
    assert done.exit_code == 0, done.output
    ef2 = CardImage.load(out).application("kenhojo").efs[0x0002].data
    assert ef2[:3] == b"\xff\x20\x82" and kenhojo.parse_basic4(ef2)["address"] == address


def test_issue_apply_refuses_beyond_the_limit_in_one_line(home):
    result = _issue("apply", "--name", NAME, "--birth", "1990-04-01", "--sex", "2",
                    "--address", _address(ADDRESS_MAX_CHARS + 1), "--at", "2026-05-01")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ADDRESS_MAX_CHARS" in lines[0] and str(ADDRESS_MAX_CHARS) in lines[0]
