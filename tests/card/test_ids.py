"""AIDs, file ids, PIN references and status words as enums in one place (issue 14 phase B).

card/aid.py, card/ids.py and card/status.py are checked cell by cell against the hand-written
access vectors (vectors/access/*.csv, from card-interface.md §2.1, §3, §4.3) and against the
cards the personas build: every AID in a CSV header is an AID member, every EF the vectors say
exists is a member of its application's enums (and no other), every status word a vector cell
holds is an SW member.
"""
from __future__ import annotations

import csv
import enum
import re

import pytest

from mynaemu.card import ids
from mynaemu.card.aid import AID
from mynaemu.card.apps import common, jorei, jpki, juki, kenhojo, kenkaku
from mynaemu.card.status import SW, describe, is_retries, retries, retries_sw
from mynaemu.issuance.personas import build_persona
from tests.support import REPO

VECTORS = REPO / "vectors" / "access"
APPS = ("jpki", "kenhojo", "kenkaku", "juki", "common")

# Every file id the card has, per application: its EF, key and PIN enums and the EFs that
# exist with an unknown use (§13.3).
FILES = {
    "jpki": (ids.JpkiEF, ids.JpkiKey, ids.JpkiPin, ids.JPKI_UNKNOWN_EFS),
    "kenhojo": (ids.KenhojoEF, ids.KenhojoKey, ids.KenhojoPin, ids.KENHOJO_UNKNOWN_EFS),
    "kenkaku": (ids.KenkakuEF, ids.KenkakuKey, ids.KenkakuPin, ids.KENKAKU_UNKNOWN_EFS),
    "juki": (ids.JukiEF, ids.JukiPin),
    "common": (ids.CommonEF, ids.CommonKey, ids.CommonPin),
}


def enumerated(app: str) -> set[int]:
    return {int(v) for group in FILES[app] for v in group}


def rows(app: str) -> list[dict]:
    with open(VECTORS / f"{app}.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def header_aid(app: str) -> bytes:
    head = (VECTORS / f"{app}.csv").read_text(encoding="utf-8").split("\n", 2)[0]
    match = re.search(r"AID ((?:[0-9A-F]{2} ){9}[0-9A-F]{2})", head)
    assert match, head
    return bytes.fromhex(match.group(1))


# -- AIDs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("app", APPS)
def test_every_aid_of_the_access_vectors_is_the_enum_member(app):
    assert AID[app.upper()] == header_aid(app)
    assert AID(header_aid(app)) is AID[app.upper()]     # lookup by value: the same member


def test_aid_members_are_bytes_that_hash_and_compare_as_bytes():
    plain = bytes.fromhex("D392F000260100000001")
    assert isinstance(AID.JPKI, bytes) and AID.JPKI == plain and hash(AID.JPKI) == hash(plain)
    assert {plain: "x"}[AID.JPKI] == "x" and {AID.JPKI: "y"}[plain] == "y"
    assert AID.ISD == bytes.fromhex("A0000001510000")
    assert AID.JOREI == b"\xf0MYNAEMU-TEST-JR" and len(AID.JOREI) == 16
    assert [a.label for a in AID] == ["jpki", "kenhojo", "kenkaku", "juki", "common", "isd", "jorei"]
    assert len({bytes(a) for a in AID}) == len(AID)


@pytest.mark.parametrize("module, member", [
    (jpki, AID.JPKI), (kenhojo, AID.KENHOJO), (kenkaku, AID.KENKAKU), (juki, AID.JUKI),
    (common, AID.COMMON), (jorei, AID.JOREI),
])
def test_each_application_module_takes_its_aid_from_the_enum(module, member):
    assert module.AID is member


# -- file ids -----------------------------------------------------------------------------------

@pytest.mark.parametrize("app", APPS)
def test_the_enums_name_exactly_the_files_the_access_vectors_find(app):
    """Cell by cell: READ BINARY of an EF the card lacks answers 6A82 in every state (§2.3)."""
    read = [r for r in rows(app) if r["command"] == "READ BINARY"]
    assert read, app
    names = enumerated(app)
    for row in read:
        fid = int(row["ef"], 16)
        exists = row["none"] != "6A82"
        assert (fid in names) == exists, f"{app} EF {row['ef']}: vectors say exists={exists}"


@pytest.mark.parametrize("persona", ["adult", "under15"])
def test_personas_build_exactly_the_enumerated_files(persona):
    image, _ = build_persona(persona, seed=0)
    by_aid = {bytes(app.aid): app for app in image.applications}
    for name in APPS:
        app = by_aid[AID[name.upper()]]
        assert app.aid == AID[name.upper()]
        # §3.1: an under-15 card carries no signing certificate and no signing key.
        absent = {ids.JpkiEF.SIGN_CERT, ids.JpkiKey.SIGN} if persona == "under15" and name == "jpki" else set()
        assert {int(f) for f in app.efs} == enumerated(name) - absent, name


def test_enum_values_do_not_collide_inside_an_application():
    for app, groups in FILES.items():
        seen = [int(v) for group in groups for v in group]
        assert len(seen) == len(set(seen)), app
    for cls in (ids.JoreiEF, ids.JoreiPin, ids.MfEF):
        assert len({int(v) for v in cls}) == len(cls)


def test_members_format_and_serialise_as_the_plain_numbers():
    fid = ids.JpkiPin.SIGN
    assert f"{fid:04X}" == "001B" and f"{fid}" == "27" and fid.to_bytes(2, "big") == b"\x00\x1b"
    assert {27: "x"}[fid] == "x" and hash(fid) == hash(27)


@pytest.mark.parametrize("module, names", [
    (jpki, {"EF_SIGN_CERT": ids.JpkiEF.SIGN_CERT, "EF_AUTH_CERT": ids.JpkiEF.AUTH_CERT,
            "EF_TOKEN": ids.JpkiEF.TOKEN, "KEY_AUTH": ids.JpkiKey.AUTH, "KEY_SIGN": ids.JpkiKey.SIGN,
            "PIN_AUTH": ids.JpkiPin.AUTH, "PIN_SIGN": ids.JpkiPin.SIGN}),
    (kenhojo, {"EF_MY_NUMBER": ids.KenhojoEF.MY_NUMBER, "EF_BASIC4": ids.KenhojoEF.BASIC4,
               "EF_SESSION_KEY": ids.KenhojoEF.SESSION_KEY, "PIN_MAIN": ids.KenhojoPin.MAIN,
               "PIN_A": ids.KenhojoPin.A, "PIN_B": ids.KenhojoPin.B, "KEY_AP": ids.KenhojoKey.AP}),
    (kenkaku, {"EF_FACE": ids.KenkakuEF.FACE, "PIN_BIRTH": ids.KenkakuPin.BIRTH,
               "PIN_A": ids.KenkakuPin.A, "PIN_B": ids.KenkakuPin.B, "KEY_CARD": ids.KenkakuKey.CARD}),
    (common, {"EF_CARD_INFO": ids.CommonEF.CARD_INFO, "PIN": ids.CommonPin.PIN,
              "KEY_AUTH": ids.CommonKey.AUTH}),
    (juki, {"EF_RECORD": ids.JukiEF.RECORD, "PIN": ids.JukiPin.PIN}),
    (jorei, {"EF_USER_ID": ids.JoreiEF.USER_ID, "EF_DOCUMENTS": ids.JoreiEF.DOCUMENTS}),
])
def test_application_constants_are_the_enum_members(module, names):
    for attr, member in names.items():
        assert getattr(module, attr) is member, (module.__name__, attr)


def test_jorei_document_pins_are_the_pin_enum():
    assert {fid for _, fid, _ in jorei.DOCUMENT_PINS.values()} == set(ids.JoreiPin)


# -- status words -------------------------------------------------------------------------------

def test_every_status_word_of_the_access_vectors_is_an_sw_member():
    """Cell by cell over every state column of every vector file."""
    for path in sorted(VECTORS.glob("*.csv")):
        with open(path, encoding="utf-8") as fh:
            for row in csv.DictReader(line for line in fh if not line.startswith("#")):
                for column, cell in row.items():
                    if column in ("ef", "command", "basis", "what") or not cell:
                        continue
                    sw = int(cell, 16)
                    assert is_retries(sw) or sw in SW._value2member_map_, (path.name, row["ef"], column, cell)


def test_the_status_words_that_joined_the_enum_keep_their_text():
    for sw in (0x6581, 0x66F1, 0x6987, 0x6988):
        assert SW(sw).value == sw
        assert describe(sw) == f"status {sw:04X}"      # as the client always showed them
    assert SW.SM_NO_SESSION is SW.SM_DATA_MISSING        # 69FC: one word, two names
    assert describe(0x69FC) == "sm data missing"
    assert describe(0x6A82) == "file not found" and describe(0x9000) == "ok"
    assert describe(0x63C2) == "wrong PIN / 2 tries left"


def test_retries_helpers_agree():
    for n in range(16):
        assert retries_sw(n) == int.from_bytes(retries(n), "big") == 0x63C0 | n
        assert is_retries(retries_sw(n))
    assert not is_retries(SW.OK) and not is_retries(SW.REFERENCE_BLOCKED)


def test_card_modules_take_their_status_words_from_the_enum():
    from mynaemu.card import core, sm
    assert core.SW_MEMORY_FAILURE is SW.MEMORY_FAILURE and core.ISD_AID is AID.ISD
    assert core.MF_INTERNAL_EF is ids.MfEF.INTERNAL
    assert sm.SW_SSK_NOT_OFFERED is SW.SSK_NOT_OFFERED
    assert sm.SW_SM_OBJECTS_MISSING is SW.SM_OBJECTS_MISSING
    assert sm.SW_SM_OBJECTS_INCORRECT is SW.SM_OBJECTS_INCORRECT
    assert sm.SW_SM_NO_SESSION is SW.SM_NO_SESSION
    assert sm.SSK_PIN is ids.KenhojoPin.MAIN


def test_ids_module_holds_only_enums_and_unknown_ef_tuples():
    for name in dir(ids):
        value = getattr(ids, name)
        if name.startswith("_") or name == "annotations" or value is enum:
            continue
        assert (isinstance(value, type) and issubclass(value, enum.IntEnum)) or \
            (name.endswith("_UNKNOWN_EFS") and all(isinstance(v, int) for v in value)), name
