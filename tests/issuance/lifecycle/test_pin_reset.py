"""暗証番号の初期化 (Workflow.pin_reset, steps_pins.py) over a real store, TEST CAs and the card core.

Each PIN kind is blocked by wrong tries through the card's own APDUs, reset at the counter, and
the published card file is then driven again through its APDUs: the new value verifies, a wrong
try shows the full counter minus one, the other PINs still take their old values with their
counters as they were, and nothing else in the image changed. Refusals (state, binding, format,
a card with no signing password) write nothing and change nothing in the store. The PIN itself
is in no table, no audit record and not in the raw SQLite files.
"""
import copy
import datetime as dt
import json

import pytest

from mynaemu.card.aid import AID
from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance.lifecycle.steps_pins import DEFAULT_IDENTITY_CHECK, PIN_KINDS
from mynaemu.issuance.lifecycle.workflow import BadInput, IllegalState, NotFound, Refused
from mynaemu.issuance.store import DB_NAME, make_form_id
from tests.issuance.lifecycle.test_workflow import (  # noqa: F401  (fixtures: key_pool, long_pki, store, wf)
    PINS, domain_dump, issued, jst, key_pool, long_pki, store, wf,
)

AT = jst(2018, 3, 1, 10)
# kind -> [(AID, PIN reference)], the card's EFs of each PIN as a client reaches them (§4.2)
WHERE = {"auth": [(AID.JPKI, 0x0018)], "sign": [(AID.JPKI, 0x001B)], "kenhojo": [(AID.KENHOJO, 0x0011)],
         "juki": [(AID.COMMON, 0x001C), (AID.JUKI, 0x001C)]}
MAX_TRIES = {"auth": 3, "sign": 5, "kenhojo": 3, "juki": 3}
# the values deliver registered (PINS; juki = the auth PIN, AP-7's default at handover)
OLD = {"auth": PINS["auth"], "sign": PINS["sign"], "kenhojo": PINS["kenhojo"], "juki": PINS["auth"]}
NEW = {"auth": "8642", "sign": "Q7PINRESETX9", "kenhojo": "9753", "juki": "3164"}
WRONG = {"auth": "0000", "sign": "WRONG000", "kenhojo": "0000", "juki": "0000"}


class CardUnderTest:
    """A card image driven through card/core.py's APDUs, as a client drives it."""

    def __init__(self, image):
        self.card = Card(image)
        self.card.power_on()

    def sw(self, apdu: bytes) -> str:
        return self.card.transmit(apdu)[-2:].hex().upper()

    def select(self, aid: AID, fid: int) -> None:
        assert self.sw(bytes([0x00, 0xA4, 0x04, 0x0C, len(aid.value)]) + aid.value) == "9000"
        assert self.sw(bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + fid.to_bytes(2, "big")) == "9000"

    def verify(self, aid: AID, fid: int, pin: str) -> str:
        self.select(aid, fid)
        return self.sw(bytes([0x00, 0x20, 0x00, 0x80, len(pin)]) + pin.encode("ascii"))

    def tries(self, aid: AID, fid: int) -> str:
        self.select(aid, fid)
        return self.sw(bytes.fromhex("00200080"))


def _person(n: int) -> dict:
    return {"name": f"初期化\u3000{'一二三四五六七八'[n]}"}


def _holder_card(wf, tmp_path, n=0, **person):
    app_id, image = issued(wf, **{**_person(n), **person})
    path = tmp_path / "cards" / f"card-{n}.json"
    path.parent.mkdir(exist_ok=True)
    image.save(path)
    return app_id, path


def _block(path, kind):
    """Spend every try of `kind` with wrong values through the card (each EF of the PIN)."""
    image = CardImage.load(path)
    card = CardUnderTest(image)
    for aid, fid in WHERE[kind]:
        answers = [card.verify(aid, fid, WRONG[kind]) for _ in range(MAX_TRIES[kind])]
        assert answers[-1] == "63C0", answers          # §4.2: 63C0 on the try that exhausts
        assert card.verify(aid, fid, OLD[kind]) == "6984"   # blocked: even the right value is refused
        assert card.tries(aid, fid) == "63C0"
    image.save(path)
    return image


def _without(doc, kind):
    """The image's JSON without the EFs of `kind` and without its meta secret."""
    doc = copy.deepcopy(doc)
    fids = {(app, f"{int(fid):04X}") for app, fid in PIN_KINDS[kind].efs}
    for app in doc["applications"]:
        app["efs"] = [ef for ef in app["efs"] if (app["name"], ef["fid"]) not in fids]
    doc["meta"].get("secrets", {}).get("pins", {}).pop(kind, None)
    doc["meta"].pop("pin_reset", None)
    return doc


def _staged_leftovers(path):
    return sorted(p.name for p in path.parent.glob(f".{path.name}.staged-*"))


def _last_audit(store):
    return store.audit_rows()[-1]


@pytest.mark.parametrize("kind", list(PIN_KINDS))
def test_a_blocked_pin_is_usable_after_the_reset_and_nothing_else_changed(wf, store, tmp_path, kind):
    app_id, path = _holder_card(wf, tmp_path)
    blocked = _block(path, kind)
    before_doc = blocked.to_json()
    others = {k: [CardUnderTest(CardImage.load(path)).tries(aid, fid) for aid, fid in WHERE[k]]
              for k in PIN_KINDS if k != kind}
    audits, events = len(store.audit_rows()), len(store.card_events(app_id))

    result = wf.pin_reset(app_id, at=AT, card_image=CardImage.load(path), pin=kind, new_pin=NEW[kind],
                          identity_check="暗証番号初期化申請書 + 運転免許証", card_path=path)

    assert (result.id, result.pin, result.retries) == (app_id, kind, MAX_TRIES[kind])
    assert _staged_leftovers(path) == []
    after = CardImage.load(path)
    # nothing else in the image: the whole JSON but those EFs and that meta secret is the same
    assert _without(after.to_json(), kind) == _without(before_doc, kind)
    assert after.meta["secrets"]["pins"][kind] == NEW[kind]
    marker = after.meta["pin_reset"]        # which EFs were set (for a merge after a kill), no value
    assert (marker["pin"], marker["efs"]) == (kind, [f"{a}/{int(f):04X}" for a, f in PIN_KINDS[kind].efs])
    assert NEW[kind] not in json.dumps(marker)
    for aid_fid in PIN_KINDS[kind].efs:
        ef = after.pin(*aid_fid)
        assert (ef.value, ef.remaining) == (NEW[kind].encode(), ef.max_tries)
    # through the card: the new value verifies, a wrong try shows the full counter minus one
    card = CardUnderTest(after)
    for aid, fid in WHERE[kind]:
        assert card.tries(aid, fid) == f"63C{MAX_TRIES[kind]:X}"
        assert card.verify(aid, fid, NEW[kind]) == "9000"
        assert card.verify(aid, fid, WRONG[kind]) == f"63C{MAX_TRIES[kind] - 1:X}"
        assert card.verify(aid, fid, OLD[kind]) == f"63C{MAX_TRIES[kind] - 2:X}"  # the old value is gone
    # the other PINs: counters as they were, old values still verify (AP-7: no link between them)
    card = CardUnderTest(CardImage.load(path))
    for other, counters in others.items():
        assert [card.tries(aid, fid) for aid, fid in WHERE[other]] == counters, other
        for aid, fid in WHERE[other]:
            assert card.verify(aid, fid, OLD[other]) == "9000", other
    # the card stays active; one audit record, naming the PIN kind and the identity check
    assert store.card(app_id)["state"] == "active" and len(store.card_events(app_id)) == events
    rows = store.audit_rows()
    assert len(rows) == audits + 1
    record = rows[-1]
    assert (record["operation"], record["target"], record["outcome"]) == ("pin-reset", app_id, "ok")
    detail = json.loads(record["detail"])
    assert detail["pin"] == kind and detail["identity_check"] == "暗証番号初期化申請書 + 運転免許証"
    assert detail["retries_before"] == 0 and detail["retries"] == MAX_TRIES[kind]
    assert NEW[kind] not in json.dumps(record, ensure_ascii=False)


def test_resetting_auth_leaves_the_unified_juki_and_kenhojo_pins(wf, store, tmp_path):
    """AP-7: the 住基 PIN was registered equal to the auth PIN; resetting auth does not follow it."""
    app_id, path = _holder_card(wf, tmp_path, pins={**PINS, "kenhojo": PINS["auth"]})
    wf.pin_reset(app_id, at=AT, card_image=CardImage.load(path), pin="auth", new_pin=NEW["auth"], card_path=path)
    card = CardUnderTest(CardImage.load(path))
    assert card.verify(AID.JPKI, 0x0018, NEW["auth"]) == "9000"
    for aid, fid in WHERE["juki"] + WHERE["kenhojo"]:
        assert card.verify(aid, fid, PINS["auth"]) == "9000"
    meta = CardImage.load(path).meta["secrets"]["pins"]
    assert (meta["auth"], meta["juki"], meta["kenhojo"]) == (NEW["auth"], PINS["auth"], PINS["auth"])


def test_without_a_card_path_the_rewritten_image_is_returned_and_the_presented_one_untouched(wf, store, tmp_path):
    app_id, path = _holder_card(wf, tmp_path)
    presented = _block(path, "kenhojo")
    shown = json.dumps(presented.to_json(), sort_keys=True)
    result = wf.pin_reset(app_id, at=AT, card_image=presented, pin="kenhojo", new_pin=NEW["kenhojo"])
    assert json.dumps(presented.to_json(), sort_keys=True) == shown      # the caller's image is not edited
    assert json.dumps(CardImage.load(path).to_json(), sort_keys=True) == shown   # no file given: none written
    assert CardUnderTest(result.image).verify(AID.KENHOJO, 0x0011, NEW["kenhojo"]) == "9000"
    assert json.loads(_last_audit(store)["detail"])["identity_check"] == DEFAULT_IDENTITY_CHECK


# ---------------------------------------------------------------------------------------------
# refusals: nothing written, nothing changed, audited as refused
# ---------------------------------------------------------------------------------------------

def _refused_without_change(wf, store, path, exc, match, *, app_id, **kwargs):
    before_store, before_file = domain_dump(store), path.read_bytes()
    audits = len(store.audit_rows())
    kwargs = {"pin": "auth", "new_pin": NEW["auth"], "at": AT, "card_path": path, **kwargs}
    kwargs.setdefault("card_image", CardImage.load(path))
    with pytest.raises(exc, match=match) as caught:
        wf.pin_reset(app_id, **kwargs)
    assert domain_dump(store) == before_store
    assert path.read_bytes() == before_file and _staged_leftovers(path) == []
    assert NEW["auth"] not in str(caught.value) and NEW["sign"] not in str(caught.value)
    return caught.value, audits


def test_a_suspended_card_is_released_first(wf, store, tmp_path):
    app_id, path = _holder_card(wf, tmp_path)
    wf.suspend(app_id, at=jst(2018, 2, 1))
    _, audits = _refused_without_change(
        wf, store, path, IllegalState,
        rf"^pin-reset refused: card {app_id} is suspended \(一時停止\); release it at the counter first "
        r"\(FLOW-SUSP-3\)$", app_id=app_id)
    record = _last_audit(store)
    assert len(store.audit_rows()) == audits + 1
    assert (record["operation"], record["outcome"]) == ("pin-reset", "refused") and "suspended" in record["reason"]
    wf.resume(app_id, at=jst(2018, 2, 2))
    wf.pin_reset(app_id, at=AT, card_image=CardImage.load(path), pin="auth", new_pin=NEW["auth"], card_path=path)
    assert CardUnderTest(CardImage.load(path)).verify(AID.JPKI, 0x0018, NEW["auth"]) == "9000"


def test_expired_and_ended_cards_are_refused(wf, store, tmp_path):
    app_id, path = _holder_card(wf, tmp_path)
    # VAL-12: the card expired (2026-01-15) and counts as abolished
    _refused_without_change(wf, store, path, IllegalState, r"is expired .*VAL-12.*pin-reset needs active",
                            app_id=app_id, at=jst(2026, 1, 16, 9))
    wf.abolish(app_id, at=jst(2018, 2, 1))
    _refused_without_change(wf, store, path, IllegalState, r"is abolished \(廃止\); pin-reset needs active",
                            app_id=app_id)


def test_another_holders_card_is_refused(wf, store, tmp_path):
    victim, victim_path = _holder_card(wf, tmp_path, 0)
    other, other_path = _holder_card(wf, tmp_path, 1)
    _refused_without_change(wf, store, victim_path, Refused, rf"belongs to '{other}', not {victim}",
                            app_id=victim, card_image=CardImage.load(other_path))
    assert _last_audit(store)["outcome"] == "refused"


def test_a_doctored_image_is_refused_by_its_card_key(wf, store, tmp_path):
    """Another card whose meta says it is the victim's (meta copied): only the card key counts."""
    victim, victim_path = _holder_card(wf, tmp_path, 0)
    _, other_path = _holder_card(wf, tmp_path, 1)
    forged = CardImage.load(other_path)
    forged.meta = copy.deepcopy(CardImage.load(victim_path).meta)
    _refused_without_change(wf, store, victim_path, Refused, "共通AP key does not match",
                            app_id=victim, card_image=forged)
    assert _last_audit(store)["outcome"] == "refused"


def test_the_card_of_a_replaced_application_is_refused(wf, store, tmp_path):
    old_id, old_path = _holder_card(wf, tmp_path, 0)
    new_id = wf.reissue(old_id, at=jst(2017, 4, 2), reason="damaged")
    wf.generate(new_id, at=jst(2017, 4, 10))
    new_image = wf.deliver(new_id, at=jst(2017, 4, 20), pins=PINS, identity_check="運転免許証")
    # the old card for the new application: not the card issued for it
    _refused_without_change(wf, store, old_path, Refused, rf"belongs to '{old_id}', not {new_id}", app_id=new_id)
    stripped = CardImage.load(old_path)
    stripped.meta.pop("application_id")
    _refused_without_change(wf, store, old_path, Refused, f"not the card issued for {new_id}", app_id=new_id,
                            card_image=stripped)
    # the old application itself is abolished
    _refused_without_change(wf, store, old_path, IllegalState, r"is abolished", app_id=old_id)
    new_path = tmp_path / "cards" / "new.json"
    new_image.save(new_path)
    wf.pin_reset(new_id, at=AT, card_image=CardImage.load(new_path), pin="auth", new_pin=NEW["auth"],
                 card_path=new_path)


def test_sign_on_a_card_without_a_signing_certificate_is_refused(wf, store, tmp_path):
    app_id, path = _holder_card(wf, tmp_path, guardianship=True, pins={"auth": "1234", "kenhojo": "5678"})
    assert CardImage.load(path).pin("jpki", 0x001B).change == "none"
    _refused_without_change(wf, store, path, Refused, "no signing certificate, so it has no signing password",
                            app_id=app_id, pin="sign", new_pin=NEW["sign"])
    assert _last_audit(store)["outcome"] == "refused"


@pytest.mark.parametrize("kind,bad", [
    ("auth", "123"), ("auth", "12345"), ("auth", "12a4"), ("auth", "１２３４"), ("auth", "12\n3"), ("auth", ""),
    ("sign", "abc123"), ("sign", "ABC12"), ("sign", "A" * 17), ("sign", "ABC-123"), ("sign", "ＡBC123"),
    ("kenhojo", "123"), ("kenhojo", "ABCD"), ("juki", "12345"), ("juki", " 123"), ("auth", None), ("sign", 123456),
])
def test_a_new_pin_in_the_wrong_format_is_bad_input(wf, store, tmp_path, kind, bad):
    app_id, path = _holder_card(wf, tmp_path)
    error, _ = _refused_without_change(wf, store, path, BadInput, "must match", app_id=app_id, pin=kind, new_pin=bad)
    if isinstance(bad, str) and bad.strip():
        assert bad not in str(error)   # the rejected value is not echoed


def test_unknown_kind_unknown_id_and_missing_identity_check(wf, store, tmp_path):
    app_id, path = _holder_card(wf, tmp_path)
    _refused_without_change(wf, store, path, BadInput, "pin must be one of auth, sign, kenhojo, juki",
                            app_id=app_id, pin="jorei")
    _refused_without_change(wf, store, path, BadInput, "needs an identity check", app_id=app_id,
                            identity_check="  ")
    _refused_without_change(wf, store, path, BadInput, "identity_check", app_id=app_id,
                            identity_check="確認\x1b[2J")
    _refused_without_change(wf, store, path, NotFound, "no application", app_id=make_form_id())
    # history never goes back: an instant before the card's last change
    _refused_without_change(wf, store, path, Refused, "^clock: ", app_id=app_id, at=jst(2016, 5, 30))


# ---------------------------------------------------------------------------------------------
# the PIN is nowhere in the store
# ---------------------------------------------------------------------------------------------

def test_the_new_pin_is_in_no_table_and_not_in_the_raw_store_files(wf, store, tmp_path):
    """The signing password is 12 characters nobody else uses: searched in every table and in the
    raw bytes of every file of the store's home (the SQLite file, its WAL), not only the card."""
    app_id, path = _holder_card(wf, tmp_path)
    wf.pin_reset(app_id, at=AT, card_image=CardImage.load(path), pin="sign", new_pin=NEW["sign"], card_path=path)
    for pin in ("auth", "kenhojo", "juki"):
        wf.pin_reset(app_id, at=AT + dt.timedelta(minutes=1), card_image=CardImage.load(path), pin=pin,
                     new_pin=NEW[pin], card_path=path)
    assert CardImage.load(path).meta["secrets"]["pins"]["sign"] == NEW["sign"]   # it is on the card
    tables = json.dumps({**domain_dump(store), "audit": [tuple(r.values()) for r in store.audit_rows()]},
                        ensure_ascii=False, default=str)
    assert NEW["sign"] not in tables
    store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name != "cards"]
    assert tmp_path / DB_NAME in files, files
    for p in files:
        assert NEW["sign"].encode() not in p.read_bytes(), p
    # the 4-digit PINs: in none of the steps' audit records (reason, detail) either
    for record in store.audit_rows():
        if record["operation"] == "pin-reset":
            for pin in ("auth", "kenhojo", "juki"):
                assert NEW[pin] not in (record["detail"] or "") + (record["reason"] or "")
