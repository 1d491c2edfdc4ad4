"""Trust boundaries, item 2: the back office writes only to the card it issued for the application.

A card is bound to its record by the 共通AP key 0019 recorded at 発行 (issuance/lifecycle/cardwrite.py):
write-card, move --card and renew --card refuse any other card (another holder's, one whose
meta was copied from the victim's, a persona from `mynaemu card create`) with one line and exit
1, the card file untouched byte for byte and the store's records unchanged (the refusal itself
is audited, SEC-8)."""
import json
import shutil

import pytest
from cryptography import x509

from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance.store import Store
from tests.support.cli import run_cli as run

VICTIM = ["--name", "被害\u3000花子", "--birth", "1990-04-02", "--sex", "2", "--address", "東京都清瀬市試験町１丁目"]
ATTACKER = ["--name", "攻撃\u3000太郎", "--birth", "1985-07-07", "--sex", "1", "--address", "東京都清瀬市見本町３丁目"]
DOMAIN = ("persons", "person_changes", "individual_numbers", "applications", "cards", "card_events",
          "certificates", "cert_events", "keys", "deliveries", "card_bindings", "card_writes")


def issue(person, path):
    app_id = json.loads(run("issue", "apply", *person, "--at", "2016-05-01", "--json").stdout)["id"]
    run("issue", "generate", app_id, "--at", "2016-05-02T10:00")
    run("issue", "deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123", "--kenhojo-pin", "1234",
        "-o", str(path), "--at", "2016-05-10T10:00")
    return app_id


@pytest.fixture
def two(home, tmp_path):
    victim = issue(VICTIM, tmp_path / "victim.json")
    attacker = issue(ATTACKER, tmp_path / "attacker.json")
    return victim, attacker, tmp_path / "victim.json", tmp_path / "attacker.json"


def dump(home):
    with Store.open(home) as store:
        return {t: sorted(tuple(r) for r in store.conn.execute(f"SELECT * FROM {t}")) for t in DOMAIN}


def sign_serial(path):
    card = Card(CardImage.load(path))
    card.power_on()
    for apdu in ("00A4040C0AD392F000260100000001", "00A4020C02001B", "002000800641424331323300",
                 "00A4020C020001"):
        assert card.transmit(bytes.fromhex(apdu))[-2:] == b"\x90\x00", apdu
    response = card.transmit(bytes.fromhex("00B00000000000"))
    return x509.load_der_x509_certificate(response[:-2]).serial_number


def refused(home, args, card, reason):
    before_store, before_card = dump(home), card.read_bytes()
    result = run("issue", *args, code=1)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and reason in lines[0], lines
    assert card.read_bytes() == before_card                  # untouched byte for byte
    assert dump(home) == before_store                        # no change, no partial state
    assert list(card.parent.glob(f".{card.name}.staged-*")) == []    # no staged file left behind (the .lock companion stays)
    return lines[0]


def last_audit(home, app_id):
    with Store.open(home) as store:
        return store.audit_rows(app_id)[-1]


def test_move_and_write_card_refuse_another_holders_card(home, two):
    victim, _, _, attacker_card = two
    refused(home, ["move", victim, "--address", "東京都清瀬市別町", "--card", str(attacker_card), "--at", "2016-06-01"],
            attacker_card, "not the card issued")
    assert last_audit(home, victim)["outcome"] == "refused"          # SEC-8: the attempt is on record
    refused(home, ["write-card", victim, "--card", str(attacker_card), "--at", "2016-06-01"], attacker_card,
            "belongs to")


def test_copying_the_victims_meta_does_not_help(home, two):
    victim, _, victim_card, attacker_card = two
    doc = json.loads(attacker_card.read_text())
    doc["meta"] = json.loads(victim_card.read_text())["meta"]        # every meta field of the victim's card
    doc["label"] = json.loads(victim_card.read_text())["label"]
    attacker_card.write_text(json.dumps(doc, ensure_ascii=False))
    line = refused(home, ["write-card", victim, "--card", str(attacker_card), "--at", "2016-06-01"], attacker_card,
                   "共通AP key does not match")
    assert victim in line
    refused(home, ["move", victim, "--address", "東京都清瀬市別町", "--card", str(attacker_card), "--at", "2016-06-01"],
            attacker_card, "not the card issued")


def test_move_and_renew_refuse_a_persona_card(home, two, tmp_path):
    victim, _, _, _ = two
    persona = tmp_path / "persona.json"
    run("card", "create", "--persona", "adult", "-o", str(persona))
    refused(home, ["move", victim, "--address", "東京都清瀬市別町", "--card", str(persona), "--at", "2016-06-01"],
            persona, "not the card issued")
    # the auth certificate (to 2021-04-02, the 5th birthday) is in its renewal window (VAL-7)
    refused(home, ["renew", victim, "--card", str(persona), "--at", "2021-02-01"], persona, "not the card issued")


def test_a_card_without_the_binding_key_is_refused(home, two, tmp_path):
    victim, _, victim_card, _ = two
    stripped = tmp_path / "stripped.json"
    doc = json.loads(victim_card.read_text())
    for app in doc["applications"]:
        if app["name"] == "common":
            app["efs"] = [ef for ef in app["efs"] if ef["type"] != "key"]
    stripped.write_text(json.dumps(doc, ensure_ascii=False))
    refused(home, ["write-card", victim, "--card", str(stripped), "--at", "2016-06-01"], stripped,
            "no usable 共通AP card key")


def test_the_holders_own_card_is_written(home, two, tmp_path):
    victim, attacker, victim_card, attacker_card = two
    old = sign_serial(victim_card)
    moved = json.loads(run("issue", "move", victim, "--address", "東京都清瀬市別町", "--card", str(victim_card),
                           "--at", "2016-06-01", "--json").stdout)
    assert moved["card_written"] and int(moved["sign_serial"], 16) == sign_serial(victim_card) != old
    # a copy of the holder's own card is the same card (same key): still accepted
    copy = tmp_path / "copy.json"
    shutil.copy(victim_card, copy)
    run("issue", "write-card", victim, "--card", str(copy), "--at", "2016-06-02")
    # the attacker's own card stays writable for the attacker's own record
    run("issue", "write-card", attacker, "--card", str(attacker_card), "--at", "2016-06-02")
