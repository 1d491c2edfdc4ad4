"""Trust boundaries, item 5: the back office keeps no holder private key after personalisation.

After 交付 no private key material of the holder is anywhere in the store (every table and
column scanned for PEM/PKCS#8 and for each card key's primes and private exponent — the modulus
is public and sits in the certificates and the card binding — and the raw database file after
a checkpoint). 異動 and renewal with the card certify keys made in the presented card; without the
card the new key waits in the store only until write-card puts it on the card."""
import base64
import datetime as dt
import json
import sqlite3

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mynaemu.card.image import CardImage, KeyEF
from mynaemu.issuance.lifecycle import cardwrite
from mynaemu.issuance.store import DB_NAME, MIGRATIONS, SCHEMA_VERSION, Store
from mynaemu.issuance.lifecycle.workflow import Workflow
from tests.support.cli import run_issue as run

JST = dt.timezone(dt.timedelta(hours=9))
CUSTODY = next(v for v, description, _ in MIGRATIONS if description.startswith("custody"))
PERSON = ["--name", "鍵無\u3000花子", "--birth", "1990-04-02", "--sex", "2", "--address", "東京都清瀬市試験町１丁目"]


def apply_generate(person=PERSON):
    app_id = json.loads(run("apply", *person, "--at", "2016-05-01", "--json").stdout)["id"]
    run("generate", app_id, "--at", "2016-05-02T10:00")
    return app_id


def deliver(app_id, path):
    run("deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123", "--kenhojo-pin", "1234",
        "-o", str(path), "--at", "2016-05-10T10:00")


def card_keys(path):
    """role or fid -> private key, for every key EF of the card file."""
    image = CardImage.load(path)
    out = {}
    for app in image.applications:
        if getattr(app, "sm_key_pem", None):
            out[f"{app.name}/sm"] = serialization.load_pem_private_key(app.sm_key_pem, None)
        for fid, ef in app.efs.items():
            if isinstance(ef, KeyEF):
                out[f"{app.name}/{fid:04X}"] = serialization.load_pem_private_key(ef.key_pem, None)
    return out


def needles(keys, generic=True):
    # PEM, and the PKCS#8 RSA header (version 0 + rsaEncryption), then this holder's own numbers
    out = [b"PRIVATE KEY", bytes.fromhex("020100300d06092a864886f70d0101010500")] if generic else []
    for key in keys:
        n = key.private_numbers()
        for value in (n.p, n.q, n.d):
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            out += [raw[:64], raw.hex()[:128].encode(), raw.hex()[:128].upper().encode(), str(value)[:150].encode(),
                    base64.b64encode(raw[:48])]
    return out


def logical_hits(home, keys, generic=True):
    """(table, column, needle index) for every stored value that holds private material.

    The store's own TEST CA keys (the settings row `test_pki`, issuance/store/pki.py) are private
    keys the store must keep: the generic PEM/PKCS#8 marks skip that one row, the holder's own
    numbers are looked for in it too."""
    found = []
    marks = needles(keys, generic)
    own = needles(keys, generic=False)
    with Store.open(home) as store:
        tables = [r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cursor = store.conn.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            for row in cursor:
                store_pki = table == "settings" and row[0] == "test_pki"
                for column, value in zip(names, row):
                    data = value.encode() if isinstance(value, str) else value if isinstance(value, bytes) else b""
                    if store_pki:
                        found += [(table, column, len(marks) - len(own) + i) for i, m in enumerate(own) if m in data]
                    else:
                        found += [(table, column, i) for i, m in enumerate(marks) if m in data]
    return found


def raw_hits(home, keys):
    conn = sqlite3.connect(str(home / DB_NAME))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith(DB_NAME))
    # the holder's own numbers in every encoding (the file also holds the store's CA keys as PEM)
    return [i for i, m in enumerate(needles(keys, generic=False)) if m in data]


def cert_key(home, app_id, kind):
    with Store.open(home) as store:
        row = store.current_certificate(app_id, kind)
        assert row["status"] != "revoked"
        return cardwrite.public_hex(x509.load_der_x509_certificate(row["der"]).public_key())


def stored_roles(home, app_id):
    with Store.open(home) as store:
        return set(store.keys(app_id))


def test_after_delivery_no_private_key_of_the_holder_is_in_the_store(home, tmp_path):
    app_id = apply_generate()
    assert stored_roles(home, app_id)                      # custody until the handover
    deliver(app_id, tmp_path / "card.json")
    keys = list(card_keys(tmp_path / "card.json").values())
    assert len(keys) >= 7
    assert logical_hits(home, keys) == []
    assert raw_hits(home, keys) == []                       # not in free pages or the WAL either
    with Store.open(home) as store:
        assert store.keys(app_id) == {} and store.card(app_id)["image"] is None


def test_move_and_renew_certify_keys_made_in_the_presented_card(home, tmp_path):
    card = tmp_path / "card.json"
    app_id = apply_generate()
    deliver(app_id, card)
    before = card_keys(card)
    run("move", app_id, "--address", "東京都清瀬市見本町２丁目", "--card", str(card), "--at", "2016-06-01")
    after = card_keys(card)
    assert cert_key(home, app_id, "sign") == cardwrite.public_hex(after["jpki/001A"].public_key())
    assert after["jpki/001A"].private_numbers() != before["jpki/001A"].private_numbers()
    assert after["common/0019"].private_numbers() == before["common/0019"].private_numbers()  # the card's own key
    assert stored_roles(home, app_id) == set()
    assert logical_hits(home, after.values()) == []
    # certificate renewal in the window (auth certificate to 2021-04-02, VAL-7)
    run("renew", app_id, "--card", str(card), "--at", "2021-02-01")
    renewed = card_keys(card)
    for kind, slot in (("auth", "jpki/0017"), ("sign", "jpki/001A")):
        assert cert_key(home, app_id, kind) == cardwrite.public_hex(renewed[slot].public_key())
        assert renewed[slot].private_numbers() != after[slot].private_numbers()
    assert stored_roles(home, app_id) == set()
    assert logical_hits(home, renewed.values()) == []


def test_without_the_card_the_new_key_waits_only_until_write_card(home, tmp_path):
    card = tmp_path / "card.json"
    app_id = apply_generate()
    deliver(app_id, card)
    run("move", app_id, "--address", "東京都清瀬市見本町２丁目", "--at", "2016-06-01")
    assert stored_roles(home, app_id) == {"sign"}          # pending: its card has not been presented
    run("write-card", app_id, "--card", str(card), "--at", "2016-06-02")
    keys = card_keys(card)
    assert cert_key(home, app_id, "sign") == cardwrite.public_hex(keys["jpki/001A"].public_key())
    assert stored_roles(home, app_id) == set()
    assert logical_hits(home, keys.values()) == []


def test_write_card_rekeys_a_certificate_whose_key_is_gone(home, tmp_path):
    card = tmp_path / "card.json"
    app_id = apply_generate()
    deliver(app_id, card)
    moved = json.loads(run("move", app_id, "--address", "東京都清瀬市見本町２丁目", "--at", "2016-06-01",
                           "--json").stdout)
    with Store.open(home) as store, store.transaction():
        store.delete_keys(app_id)                           # as the v3 migration does for delivered cards
    run("write-card", app_id, "--card", str(card), "--at", "2016-06-02")
    keys = card_keys(card)
    with Store.open(home) as store:
        orphan = store.certificate_by_serial("sign", int(moved["sign_serial"], 16))
        assert store.status_at(orphan, dt.datetime(2016, 6, 3, tzinfo=JST))["reason"] == "superseded"
        new = store.current_certificate(app_id, "sign")
        assert new["not_after"] == orphan["not_after"]      # same expiry (VAL-10)
    assert cert_key(home, app_id, "sign") == cardwrite.public_hex(keys["jpki/001A"].public_key())


def test_migration_binds_old_cards_and_deletes_the_keys_of_delivered_ones(home, tmp_path, issue_staff):
    card = tmp_path / "card.json"
    delivered = apply_generate()
    deliver(delivered, card)
    waiting = apply_generate(["--name", "待機\u3000次郎", "--birth", "1980-01-01", "--sex", "1", "--address", "東京都"])
    # make the store look like a v2 store: keys of the delivered card kept, no v3 tables
    keys = card_keys(card)
    with Store.open(home) as store, store.transaction() as conn:
        for role, (app, fid) in cardwrite.CARD_KEY_SLOTS.items():
            key = keys[f"{app}/{fid:04X}"]
            store.put_key(delivered, role, key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()),
                          dt.datetime(2016, 5, 2, tzinfo=JST))
        conn.execute("DROP TABLE card_bindings")
        conn.execute("DROP TABLE card_writes")
        for table in ("staff_rights", "staff"):   # v4 (staff, issue 13) came after v3: a v2 store has neither
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DROP INDEX audit_chain")      # nor v5's audit chain (issue 13)
        conn.execute("DROP TABLE audit_head")
        conn.execute("DROP TABLE kiosk_history")    # nor v7's kiosk history (issue 13)
        for column in ("chain_seq", "prev_hash", "row_hash"):
            conn.execute(f"ALTER TABLE audit DROP COLUMN {column}")
        conn.execute("DROP TABLE audit_purges")     # nor v6's deletion history (issue 13)
        conn.execute("DROP TABLE centre_spent_challenges")   # nor v8's spent challenges
        conn.execute("DELETE FROM schema_version WHERE version >= ?", (CUSTODY,))
    with Store.open(home) as store:                         # migrates through v3 to the current version
        assert store.schema_version() == SCHEMA_VERSION > CUSTODY
        assert store.keys(delivered) == {}
        assert set(store.keys(waiting)) >= {"auth", "common"}          # not handed over yet: kept
        assert store.conn.execute("SELECT count(*) FROM card_bindings").fetchone()[0] == 2
    assert logical_hits(home, keys.values(), generic=False) == []   # the waiting card's keys stay
    issue_staff(home)   # the staff tables came back empty with the migration
    run("write-card", delivered, "--card", str(card), "--at", "2016-06-02")   # the binding works


def test_batch_generation_binds_every_card(home, tmp_path):
    ids = [json.loads(run("apply", "--name", f"一括\u3000{n}", "--birth", "1990-01-01", "--sex", "1",
                          "--address", "東京都", "--at", "2016-05-01", "--json").stdout)["id"] for n in ("一", "二")]
    run("generate", "--workers", "2", "--at", "2016-05-02")
    with Store.open(home) as store:
        bound = {r[0] for r in store.conn.execute("SELECT application_id FROM card_bindings")}
    assert bound == set(ids)
    deliver(ids[0], tmp_path / "one.json")
    assert stored_roles(home, ids[0]) == set() and stored_roles(home, ids[1])
    run("write-card", ids[0], "--card", str(tmp_path / "one.json"), "--at", "2016-06-01")


def test_workflow_api_without_paths_keeps_custody_too(tmp_path):
    # in-process callers (tests, personas) get the image back; the store still drops the keys
    with Store.open(tmp_path / "h") as store:
        wf = Workflow(store, operator="t", terminal="t")
        app_id = wf.apply(name="内部\u3000三郎", birth=dt.date(1990, 1, 1), sex="1", address="東京都",
                          at=dt.datetime(2016, 5, 1, tzinfo=JST))
        wf.generate(app_id, at=dt.datetime(2016, 5, 2, tzinfo=JST))
        image = wf.deliver(app_id, at=dt.datetime(2016, 5, 10, tzinfo=JST),
                           pins={"auth": "1234", "sign": "ABC123", "kenhojo": "1234"}, identity_check="x")
        assert store.keys(app_id) == {}
        moved = wf.move(app_id, at=dt.datetime(2016, 6, 1, tzinfo=JST), address="東京都港区", card_image=image)
        assert store.keys(app_id) == {} and moved["image"] is not None
