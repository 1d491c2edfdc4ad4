"""Key identifiers in the §13.1 form: the strict codec, and every id on an issued card."""
from __future__ import annotations

import pytest

from mynaemu.card import keyid, tlv
from mynaemu.card.apps import kenhojo, kenkaku, mf
from mynaemu.issuance import personalise
from mynaemu.issuance.pki.ca import default_test_pki
from mynaemu.issuance.personas import build_persona


def raw(number: bytes, group: bytes, pad: bytes = bytes(4), sep: bytes = b"\x08\x05") -> bytes:
    return number + sep + group + pad


# §13.1 examples: production 5000023 / 5000033 / 5000020, test 6000023 / 6000033,
# 6000024/001 and 5900025/001 from the test card's kenkaku EF 0003.
@pytest.mark.parametrize("number, group", [
    ("6000024", "001"), ("5900025", "001"), ("5000023", "001"), ("5000033", "002"),
    ("5000020", "000"), ("6000023", "999"), ("6000033", "010")])
def test_examples_of_13_1_parse_and_print(number, group):
    data = raw(number.encode(), group.encode())
    kid = keyid.parse(data)
    assert str(kid) == f"{number}/{group}"
    assert kid.encode() == data and bytes(kid) == data
    assert keyid.encode(f"{number}/{group}") == data
    assert kid.is_test == number.startswith("6")
    assert keyid.describe(data) == f"{number}/{group}"


def test_padding_is_kept_and_its_last_byte_need_not_be_zero():
    data = raw(b"6000024", b"001", bytes.fromhex("00000001"))
    kid = keyid.parse(data)
    assert kid.padding == bytes.fromhex("00000001") and kid.encode() == data
    assert keyid.parse(raw(b"6000024", b"001", b"\xff" * 4)).padding == b"\xff" * 4


@pytest.mark.parametrize("data, message", [
    (raw(b"600002A", b"001"), "7 ASCII digits"),
    (raw(b"6000024", b"0 1"), "3 ASCII digits"),
    (raw(b"6000024", b"001", sep=b"\x08\x06"), "08 05"),
    (raw(b"6000024", b"001", sep=b"\x05\x08"), "08 05"),
    (raw(b"6000024", b"001")[:-1], "16 bytes"),
    (raw(b"6000024", b"001") + b"\x00", "16 bytes"),
    (b"TEST-CVC-ISSUER1", "7 ASCII digits"),
    (b"\x00" * 16, "7 ASCII digits"),
    ("6000024/001", "bytes"),
    (raw("６000024".encode()[:7], b"001"), "7 ASCII digits"),   # a full-width digit
])
def test_parser_rejects_anything_else(data, message):
    with pytest.raises(keyid.KeyIdError, match=message):
        keyid.parse(data)
    if isinstance(data, bytes):
        assert "not a §13.1 key id" in keyid.describe(data)


@pytest.mark.parametrize("text", ["6000024", "6000024/01", "600002/001", "6000024-001", "",
                                  "6000024/001 ", "６000024/001"])
def test_text_form_is_strict(text):
    with pytest.raises(keyid.KeyIdError):
        keyid.from_text(text)


def test_make_test_id_stays_in_the_test_series():
    assert keyid.make_test_id("6000033", 7) == raw(b"6000033", b"007")
    with pytest.raises(keyid.KeyIdError, match="begin with 6"):
        keyid.make_test_id("5000033", 7)
    with pytest.raises(keyid.KeyIdError):
        keyid.make_test_id("6000033", 1000)


def test_personalise_key_id_function():
    a = personalise.key_id("kenhojo", b"material")
    assert a == personalise.key_id("kenhojo", b"material")          # stable for a key
    assert str(keyid.parse(a)).startswith("6000033/")
    assert str(keyid.parse(personalise.key_id("kenkaku", b"m"))).startswith("6000024/")
    assert keyid.parse(personalise.key_id("key_reference", b"m")).is_test
    with pytest.raises(ValueError, match="unknown key-id role"):
        personalise.key_id("jpki", b"m")


@pytest.fixture(scope="module")
def adult():
    return build_persona("adult", seed=0)[0]


def _ids_on_card(image) -> dict:
    hojo, kaku = image.application("kenhojo"), image.application("kenkaku")
    hojo_cvc = kenhojo.parse_cvc(hojo.efs[0x0004].data)
    kaku_cvc = kenhojo.parse_cvc(kaku.efs[0x0004].data)
    kaku_info = kenkaku.parse_ap_info(kaku.efs[0x0003].data)
    upper = kenhojo.parse_cvc(mf.cvc_from_contents(image.get_data[mf.CHAIN_UPPER]))
    ids = {
        "kenhojo CVC issuer": hojo_cvc.issuer_key_id, "kenhojo CVC subject": hojo_cvc.subject_key_id,
        "kenkaku CVC issuer": kaku_cvc.issuer_key_id, "kenkaku CVC subject": kaku_cvc.subject_key_id,
        "kenhojo DF42": kenhojo.parse_ap_info(hojo.efs[0x0005].data)["key_id"],
        "kenkaku DF32": kaku_info["key_id"], "kenkaku DF35 head": kaku_info["blob_key_id"],
        "MF 0042": image.get_data[mf.ISSUER_IDENTIFICATION],
        "MF 00F7": image.get_data[mf.INTERMEDIATE_KEY_ID],
        "MF 00F8 issuer": upper.issuer_key_id, "MF 00F8 subject": upper.subject_key_id,
    }
    for name in ("common", "juki"):
        ef = image.application(name).efs[0x0002]
        ids[f"{name} EF 0002"] = ef.records[0] if hasattr(ef, "records") else ef.data
    return ids, kaku_info


def test_every_key_id_on_an_issued_card_is_a_test_series_13_1_id(adult):
    ids, kaku_info = _ids_on_card(adult)
    for where, value in ids.items():
        kid = keyid.parse(value[-16:] if len(value) > 16 else value)
        assert kid.is_test, where
    issuer = default_test_pki().cvc_issuer.key_id
    # one TEST CVC CA issues both 券面 CVCs and heads the MF chain (§3.5, §13.1)
    assert ids["kenhojo CVC issuer"] == ids["kenkaku CVC issuer"] == ids["MF 0042"] == issuer
    assert ids["kenkaku DF35 head"] == issuer
    assert ids["kenhojo DF42"] == ids["kenhojo CVC subject"]
    assert ids["kenkaku DF32"] == ids["kenkaku CVC subject"]
    assert ids["MF 00F7"] == ids["MF 00F8 subject"]
    assert str(keyid.parse(ids["kenhojo CVC subject"])).startswith("6000033/")
    assert str(keyid.parse(ids["kenkaku CVC subject"])).startswith("6000024/")
    assert str(keyid.parse(issuer)).startswith("6000023/")
    assert kaku_info["version"] == 0                         # §13.1: DF33 = 00
    ef3 = adult.application("kenkaku").efs[0x0003].data
    assert tlv.find(tlv.expect(ef3, 0xFF30).children(), 0xDF33).value == b"\x00"


def test_card_info_prints_ids_in_the_13_1_form(adult, tmp_path):
    from click.testing import CliRunner

    from mynaemu.card.describe import describe_image
    from mynaemu.tools.cli import main

    lines = describe_image(adult)["key_ids"]
    assert any(line.startswith("kenhojo CVC 被証明者鍵ID: 6000033/") for line in lines)
    assert any(line.startswith("MF GET DATA 0042: 6000023/") for line in lines)
    path = tmp_path / "card.json"
    adult.save(path)
    out = CliRunner().invoke(main, ["card", "info", str(path)]).output
    assert "kenkaku EF 0003 DF32: 6000024/" in out
    # a malformed id is shown as hex, marked, not hidden or crashed on
    import copy
    odd = copy.deepcopy(adult)
    ef5 = bytearray(odd.application("kenhojo").efs[0x0005].data)
    ef5[15:31] = b"TEST-KENHOJO-034"
    odd.application("kenhojo").efs[0x0005].data = bytes(ef5)
    assert any("DF42: " + b"TEST-KENHOJO-034".hex().upper() + " (not a §13.1 key id)" in line
               for line in describe_image(odd)["key_ids"])
