"""The card as the detailed public record has it (card-interface.md §13.3): 住基AP and 共通AP,
the JPKI EFs that exist though their use is unknown, smartphone tokens."""
import copy
import dataclasses

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from mynaemu.card.apps import jpki, juki
from mynaemu.card.core import Card
from mynaemu.card.image import CardImage, CardOptions, OpaqueEF, RecordEF
from mynaemu.issuance.personas import PERSONAS, build_persona
from mynaemu.tools.cli import main

AID_J = "D392F000260100000001"
AID_JUKI = "D3921000310001010401"
AID_COMMON = "D3921000310001010100"


@pytest.fixture(scope="module")
def adult():
    return build_persona("adult", seed=0)


def session(image, options=None):
    image = copy.deepcopy(image)
    if options is not None:
        image.options = options
    card = Card(image)
    card.power_on()

    def tx(hexstr):
        resp = card.transmit(bytes.fromhex(hexstr.replace(" ", "")))
        return resp[:-2], resp[-2:].hex().upper()
    return tx


def select(tx, aid):
    assert tx(f"00A4040C{len(aid) // 2:02X}{aid}")[1] == "9000"


# -- 共通AP / 住基AP ---------------------------------------------------------------------------

@pytest.mark.parametrize("aid", [AID_COMMON, AID_JUKI])
def test_key_reference_is_a_record_read_with_read_record(adult, aid):
    image, _ = adult
    tx = session(image)
    select(tx, aid)
    assert tx("00A4020C020002")[1] == "9000"
    data, sw = tx("00B2010400")                     # §13.3: record 1 of the current EF
    assert sw == "9000" and len(data) == 16
    assert tx("00B0000000")[1] == "6981"             # not transparent
    assert tx("00B2011400") == (data, "9000")        # SFI 2 form (§2.4)
    assert tx("00B2020400")[1] == "6A83"             # one record only


def test_key_reference_is_the_same_in_both_aps(adult):
    image, _ = adult
    recs = [image.application(name).efs[0x0002].records for name in ("common", "juki")]
    assert recs[0] == recs[1] and len(recs[0]) == 1 and len(recs[0][0]) == 16


def test_juki_holds_what_the_record_shows_and_nothing_more(adult):
    image, info = adult
    app = image.application("juki")
    # one record-structured EF, 0002 and 001C (§13.3); no key, no EF 0003
    assert set(app.efs) == {juki.EF_RECORD, 0x0002, 0x001C}
    assert all(isinstance(app.efs[f], RecordEF) for f in (juki.EF_RECORD, 0x0002))
    tx = session(image)
    select(tx, AID_JUKI)
    assert tx("00A4020C020019")[1] == "6A82"
    assert tx("00A4020C020003")[1] == "6A82"
    # only the 共通AP key answers INTERNAL AUTHENTICATE
    assert tx("00880099 10 " + "01" * 16 + " 00")[1] == "6A88"
    # the record EF opens with PIN 001C ([U] content: the 住民票コード, AP-6)
    assert tx("00B2010C00")[1] == "6982"
    assert tx("00A4020C02001C")[1] == "9000"
    assert tx("0020008004" + info.pins["juki"].encode().hex())[1] == "9000"
    data, sw = tx("00B2010C00")
    assert sw == "9000" and juki.parse_juminhyo_code(data) == info.identity.juminhyo_code


def test_common_key_0019_answers_internal_authenticate(adult):
    image, _ = adult
    tx = session(image)
    select(tx, AID_COMMON)
    challenge = bytes(range(1, 33))
    sig, sw = tx("00880099 20 " + challenge.hex() + " 00")
    assert sw == "9000"
    key = serialization.load_pem_private_key(image.application("common").efs[0x0019].key_pem, None)
    key.public_key().verify(sig, challenge, padding.PKCS1v15(), hashes.SHA256())


# -- JPKI EFs that exist though their use is unknown (§13.3) ----------------------------------

@pytest.mark.parametrize("fid", jpki.UNKNOWN_EFS)
def test_jpki_unknown_efs_select_and_refuse_reads(adult, fid):
    image, info = adult
    tx = session(image)
    select(tx, AID_J)
    assert tx(f"00A4020C02{fid:04X}")[1] == "9000"
    assert tx("00B0000000")[1] == "6981"                          # options.unknown_ef_sw default
    assert tx(f"00B0{0x80 | fid:02X}00000000")[1] == "6981"     # SFI form, as JSAPDU would
    assert tx("00B2010400")[1] == "6981"
    # no credential opens them
    assert tx("00A4020C020018")[1] == "9000"
    assert tx("0020008004" + info.pins["auth"].encode().hex())[1] == "9000"
    assert tx(f"00A4020C02{fid:04X}")[1] == "9000"
    assert tx("00B0000000")[1] == "6981"


@pytest.mark.parametrize("sw", ["6982", "6985", "6986"])
def test_jpki_unknown_efs_answer_the_card_option(adult, sw):
    image, _ = adult
    tx = session(image, CardOptions(unknown_ef_sw=sw))
    select(tx, AID_J)
    for fid in jpki.UNKNOWN_EFS:
        assert tx(f"00A4020C02{fid:04X}")[1] == "9000"
        assert tx("00B0000000")[1] == sw
    # EF 0009 (protected, no credential opens it, §3.1) and an EF behind a PIN keep 6982
    for fid in (jpki.EF_PROTECTED, jpki.EF_SIGN_CERT):
        assert tx(f"00A4020C02{fid:04X}")[1] == "9000"
        assert tx("00B0000004")[1] == "6982"


def test_unknown_efs_are_opaque(adult):
    image, _ = adult
    for fid in jpki.UNKNOWN_EFS:
        assert isinstance(image.application("jpki").efs[fid], OpaqueEF)
    doc = image.to_json()
    back = CardImage.from_json(doc)
    assert all(isinstance(back.application("jpki").efs[f], OpaqueEF) for f in jpki.UNKNOWN_EFS)


# -- smartphone tokens (§3.1, §13.3) ----------------------------------------------------------

@pytest.mark.parametrize("persona, label, cert_behind_pin", [
    ("smartphone", "JPKIAPGPSETOKEN", True), ("iphone", "JPKIAPIOSTOKEN", False)])
def test_smartphone_tokens(persona, label, cert_behind_pin):
    image, info = build_persona(persona, seed=0)
    assert [a.name for a in image.applications] == ["jpki"] and image.get_data == {}
    token = jpki.parse_token_info(image.application("jpki").efs[jpki.EF_TOKEN].data)
    assert token["label"] == label and token["max_pin_len"] == 16   # rest of the 160 bytes kept
    tx = session(image)
    select(tx, AID_J)
    assert tx("00A4020C020006")[1] == "9000"
    assert tx("00B0000020") == (label.encode().ljust(32, b" "), "9000")
    assert tx("00A4020C02000A")[1] == "9000"
    head, sw = tx("00B0000004")
    assert sw == ("6982" if cert_behind_pin else "9000")
    assert tx("00A4020C020018")[1] == "9000"
    assert tx("0020008004" + info.pins["auth"].encode().hex())[1] == "9000"
    assert tx("00A4020C02000A")[1] == "9000"
    der, sw = tx("00B00000000000")
    assert sw == "9000"
    x509.load_der_x509_certificate(der)
    # the phone carries no 券面/住基/共通 AP
    for aid in ("D3921000310001010408", "D3921000310001010402", AID_JUKI, AID_COMMON):
        assert tx(f"00A4040C0A{aid}")[1] == "6A82"


def test_smartphone_personas_are_listed_and_created(tmp_path):
    assert {"smartphone", "iphone", "long-address"} <= set(PERSONAS)
    listing = CliRunner().invoke(main, ["card", "personas"])
    assert "JPKIAPGPSETOKEN" in listing.output and "JPKIAPIOSTOKEN" in listing.output
    out = tmp_path / "phone.json"
    result = CliRunner().invoke(main, ["card", "create", "--persona", "smartphone", "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = CardImage.load(out)
    assert doc.meta["persona"] == "smartphone"
    assert doc.application("jpki").efs[jpki.EF_AUTH_CERT].read == (jpki.PIN_AUTH,)


def test_persona_spec_state_is_not_shared():
    # the token state function must not touch the adult persona built after it
    build_persona("smartphone", seed=1)
    image, _ = build_persona("adult", seed=1)
    assert image.application("jpki").efs[jpki.EF_TOKEN].data.startswith(b"JPKIAPICCTOKEN2 ")
    assert dataclasses.is_dataclass(PERSONAS["smartphone"])


# -- `mynaemu card apdu` sends any command of one byte or more as given ----------------------

@pytest.mark.parametrize("apdu", ["00", "80", "00A4", "00A404", "FFFFFF", "00A4040C"])
def test_card_apdu_short_commands_get_the_card_answer(tmp_path, apdu):
    out = tmp_path / "c.json"
    assert CliRunner().invoke(main, ["card", "create", "--persona", "adult", "--seed", "3",
                                     "-o", str(out)]).exit_code == 0
    result = CliRunner().invoke(main, ["card", "apdu", str(out), apdu, "00A4040C0A" + AID_J])
    assert result.exit_code == 0, result.output
    # the card core answers 6700 (wrong length) and keeps working for the next command
    assert result.output.split() == ["6700", "9000"]


def test_card_apdu_refuses_no_bytes_in_one_line(tmp_path):
    out = tmp_path / "c.json"
    assert CliRunner().invoke(main, ["card", "create", "--persona", "adult", "--seed", "3",
                                     "-o", str(out)]).exit_code == 0
    result = CliRunner().invoke(main, ["card", "apdu", str(out), " "])
    assert result.exit_code == 2 and "at least one byte" in result.output


# -- 4-byte certificate serials, unique per CA (§13.3, §7.1) -----------------------------------

import datetime as _dt  # noqa: E402
import itertools  # noqa: E402
import random  # noqa: E402

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from mynaemu.issuance.pki import profiles  # noqa: E402
from mynaemu.issuance.personalise import KEYS_PER_CARD  # noqa: E402
from mynaemu.issuance.store import Store, StoreConflict  # noqa: E402
from mynaemu.issuance.lifecycle.workflow import Workflow  # noqa: E402

JST = _dt.timezone(_dt.timedelta(hours=9))


def der_serial_octets(cert: x509.Certificate) -> bytes:
    """The serial's INTEGER content octets as they stand in the DER (read from the TBS)."""
    tbs = cert.tbs_certificate_bytes
    pos = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)        # skip TBS SEQUENCE header
    assert tbs[pos] == 0xA0                                   # [0] version
    pos += 2 + tbs[pos + 1]
    assert tbs[pos] == 0x02                                   # INTEGER serialNumber
    return tbs[pos + 2:pos + 2 + tbs[pos + 1]]


def test_random_serial_is_4_octets():
    rng = random.Random(5)
    for _ in range(2000):
        s = profiles.random_serial(rng)
        assert profiles.SERIAL_MIN <= s <= profiles.SERIAL_MAX
        assert len(s.to_bytes(4, "big")) == 4 and s >> 24 != 0 and s >> 31 == 0


def test_persona_certificates_have_4_octet_serials(adult):
    image, info = adult
    for fid in (0x000A, 0x0001):
        cert = x509.load_der_x509_certificate(image.application("jpki").efs[fid].data)
        octets = der_serial_octets(cert)
        assert len(octets) == 4 and octets[0] & 0x80 == 0 and octets[0] != 0
        assert int.from_bytes(octets, "big") == cert.serial_number


@pytest.fixture(scope="module")
def key_pool():
    return [rsa.generate_private_key(65537, 2048) for _ in range(KEYS_PER_CARD + 1)]


def _issue_one(store, key_pool):
    cycle = itertools.cycle(key_pool)
    wf = Workflow(store, operator="op-1", terminal="t-1", key_factory=lambda: next(cycle))
    at = _dt.datetime(2026, 5, 1, 9, tzinfo=JST)
    app_id = wf.apply(name="見本\u3000花子", birth=_dt.date(1980, 1, 15), sex="2",
                      address="東京都清瀬市試験町１丁目２番３号", at=at)
    wf.generate(app_id, at=at + _dt.timedelta(days=1))
    return app_id


def _check_store_serials(store, key_pool):
    app_id = _issue_one(store, key_pool)
    rows = store.conn.execute("SELECT ca_kind, serial, der FROM certificates").fetchall()
    assert {r["ca_kind"] for r in rows} == {"auth", "sign"}
    for row in rows:
        assert profiles.SERIAL_MIN <= row["serial"] <= profiles.SERIAL_MAX
        assert len(der_serial_octets(x509.load_der_x509_certificate(bytes(row["der"])))) == 4
    n = store.new_cert_serial("auth")
    assert profiles.SERIAL_MIN <= n <= profiles.SERIAL_MAX and not store.serial_taken("auth", n)
    # the store enforces one serial per CA: a second certificate with the same (CA, serial)
    # is a conflict (the workflow reruns the transaction), and nothing is written
    auth = next(r for r in rows if r["ca_kind"] == "auth")
    cert = x509.load_der_x509_certificate(bytes(auth["der"]))
    before = store.conn.execute("SELECT count(*) FROM certificates").fetchone()[0]
    with pytest.raises(StoreConflict, match="serial"):
        with store.transaction():
            store.insert_certificate(app_id, "auth", cert, "X" * 23,
                                     at=_dt.datetime(2026, 5, 3, tzinfo=JST), audit_id=None)
    assert store.conn.execute("SELECT count(*) FROM certificates").fetchone()[0] == before
    # the same serial under the other CA is a different certificate
    with store.transaction():
        store.insert_certificate(app_id, "sign", cert, "Y" * 23,
                                 at=_dt.datetime(2026, 5, 3, tzinfo=JST), audit_id=None)


def test_store_serials_sqlite(tmp_path, key_pool):
    with Store.open(tmp_path) as store:
        _check_store_serials(store, key_pool)


def test_store_serials_postgresql(key_pool):
    from tests.support.pg import fresh_pg_url

    with fresh_pg_url() as url, Store(url) as store:
        _check_store_serials(store, key_pool)
