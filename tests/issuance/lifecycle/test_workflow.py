"""The issuance workflow (rules.md §9-§10) end to end over a real store, TEST CAs and card core.

Keys come from a module-scoped pool (key generation is not what these tests are about). Most
tests run under a TEST PKI valid 2015..2048 so the seed's worked examples (VAL-9, VAL-10: born
1980-01-15, card issued 2016-05-20) can be replayed on their own dates.
"""
import datetime as dt
import itertools
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance import policy
from mynaemu.issuance.pki.ca import CvcIssuer, TestCA, TestPKI
from mynaemu.issuance.numbering import is_valid_individual_number
from mynaemu.issuance.pki.ocsp import OcspResponder, ocsp_check, serve_ocsp
from mynaemu.issuance.personalise import KEYS_PER_CARD, CardKeys
from mynaemu.issuance.pki.revocation import build_crl, status_from_crl, verify_crl
from mynaemu.issuance.store import Store, StoreRevocationSource
from mynaemu.issuance.lifecycle.workflow import (
    BadInput, Basic4, IllegalState, NotFound, ProxyHandover, Refused, Workflow, WorkflowError,
)

JST = policy.JST
AID_JPKI = "D392F000260100000001"
PINS = {"auth": "1234", "sign": "ABC123", "kenhojo": "5678"}
HANAKO = dict(name="番号\u3000花子", birth=dt.date(1980, 1, 15), sex="2", address="東京都清瀬市試験町１丁目２番３号")


def jst(*args):
    return dt.datetime(*args, tzinfo=JST)


@pytest.fixture(scope="module")
def key_pool():
    return [rsa.generate_private_key(65537, 2048) for _ in range(KEYS_PER_CARD + 3)]


@pytest.fixture(scope="module")
def long_pki():
    """A TEST PKI valid 2015-01-01..2048-12-31, for the seed's 2016-2026 examples."""
    start = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc)
    make = lambda kind: TestCA.create(kind, key=rsa.generate_private_key(65537, 2048),  # noqa: E731
                                      not_before=start, years=34)
    return TestPKI(make("auth"), make("sign"), CvcIssuer.create(key=rsa.generate_private_key(65537, 2048)))


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path) as s:
        yield s


@pytest.fixture
def wf(store, long_pki, key_pool):
    cycle = itertools.cycle(key_pool)
    return Workflow(store, pki=long_pki, operator="op-17", terminal="counter-3", key_factory=lambda: next(cycle))


def issued(wf, *, at_apply=jst(2016, 5, 1, 9), at_gen=jst(2016, 5, 20, 10), at_deliver=jst(2016, 6, 1, 10),
           pins=PINS, **person):
    """apply → generate → deliver; returns (id, image)."""
    fields = {**HANAKO, **person}
    app_id = wf.apply(at=at_apply, **fields)
    wf.generate(app_id, at=at_gen)
    image = wf.deliver(app_id, at=at_deliver, pins=pins, identity_check="運転免許証")
    return app_id, image


def tx(card, hexstr):
    r = card.transmit(bytes.fromhex(hexstr))
    return r[:-2], r[-2:].hex().upper()


def read_jpki_ef(image, fid, pin=None):
    card = Card(image)
    card.power_on()
    assert tx(card, "00A4040C0A" + AID_JPKI)[1] == "9000"
    if pin is not None:  # the signing certificate EF 0001 needs the signing password 001B (spec §3.1)
        assert tx(card, "00A4020C02001B")[1] == "9000"
        assert tx(card, f"00200080{len(pin):02X}" + pin.encode().hex())[1] == "9000"
    assert tx(card, f"00A4020C02{fid:04X}")[1] == "9000"
    data, sw = tx(card, "00B00000000000")
    assert sw == "9000"
    return x509.load_der_x509_certificate(bytes(data))


def domain_dump(store):
    """Every table except the audit trail (audit, audit_head), to prove a refused step changed nothing."""
    out = {}
    for (table,) in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'audit%'"):
        out[table] = [tuple(r) for r in store.conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    return out


def cert_row(store, app_id, kind):
    return store.current_certificate(app_id, kind)


# ---------------------------------------------------------------------------------------------
# the must-show lifecycle
# ---------------------------------------------------------------------------------------------

def test_lifecycle_card_works_then_hold_shows_in_ocsp_and_crl_then_release(wf, store, long_pki):
    app_id, image = issued(wf)
    # the served card works: READ BINARY of the free auth certificate EF 000A (spec §3.1)
    auth = read_jpki_ef(image, 0x000A)
    row = cert_row(store, app_id, "auth")
    assert auth.serial_number == row["serial"]
    assert auth.not_valid_after_utc == dt.datetime(2021, 1, 15, 14, 59, 59, tzinfo=dt.timezone.utc)  # VAL-9, D5
    auth.verify_directly_issued_by(long_pki.auth_ca.certificate)

    clock = {"now": jst(2017, 3, 1, 12)}
    responder = OcspResponder({"auth": long_pki.auth_ca, "sign": long_pki.sign_ca},
                              StoreRevocationSource(store.path), clock=lambda: clock["now"])
    server, _, url = serve_ocsp(responder)
    try:
        assert ocsp_check(url, auth, long_pki.auth_ca.certificate, at=clock["now"]).status == "good"
        # FLOW-SUSP-3: the call centre checks the caller's 基本4情報, then suspends + holds
        held = wf.suspend(app_id, at=jst(2017, 3, 2, 8), caller=Basic4(**HANAKO))
        assert sorted(held) == sorted([row["serial"], cert_row(store, app_id, "sign")["serial"]])
        clock["now"] = jst(2017, 3, 2, 9)
        answer = ocsp_check(url, auth, long_pki.auth_ca.certificate, at=clock["now"])
        assert answer.status == "hold" and answer.reason == x509.ReasonFlags.certificate_hold
        crl = build_crl(long_pki.auth_ca, store, at=clock["now"], crl_number=1)
        verify_crl(crl, long_pki.auth_ca.certificate, at=clock["now"])
        assert status_from_crl(crl, auth).status == "hold"
        # 解除 at the counter (FLOW-SUSP-3): good again, and gone from the next CRL
        wf.resume(app_id, at=jst(2017, 3, 5, 10), identity_check="一時停止解除申請書 + 運転免許証")
        clock["now"] = jst(2017, 3, 5, 11)
        assert ocsp_check(url, auth, long_pki.auth_ca.certificate, at=clock["now"]).status == "good"
        crl2 = build_crl(long_pki.auth_ca, store, at=clock["now"], crl_number=2)
        assert status_from_crl(crl2, auth).status == "good"
        # looking back: the store still answers "hold" for the suspended instant
        assert store.certificate_status("auth", row["serial"], jst(2017, 3, 3)).status == "hold"
    finally:
        server.shutdown()
        server.server_close()
    status = wf.status(app_id, at=jst(2017, 3, 6))
    assert status["state"] == "active" and status["auth_cert"]["status"] == "good"


def test_suspend_holds_every_certificate_and_release_needs_the_counter(wf, store):
    app_id, _ = issued(wf)
    with pytest.raises(Refused, match="FLOW-SUSP-3.*住所"):
        wf.suspend(app_id, at=jst(2017, 1, 1), caller=Basic4(**{**HANAKO, "address": "どこか"}))
    wf.suspend(app_id, at=jst(2017, 1, 2))
    assert {r["status"] for r in store.certificates_of(app_id)} == {"hold"}  # STATE-3(3)
    with pytest.raises(Refused, match="only at the counter"):
        wf.resume(app_id, at=jst(2017, 1, 3), channel="phone")
    with pytest.raises(IllegalState, match="is suspended"):
        wf.suspend(app_id, at=jst(2017, 1, 3))
    with pytest.raises(IllegalState, match="suspended"):
        wf.move(app_id, at=jst(2017, 1, 3), address="東京都清瀬市見本町")


# ---------------------------------------------------------------------------------------------
# 異動 (MOV-1, VAL-10)
# ---------------------------------------------------------------------------------------------

def test_move_reissues_the_signing_certificate_up_to_the_auth_expiry(wf, store, long_pki):
    app_id, image = issued(wf)
    auth_before = cert_row(store, app_id, "auth")
    sign_before = cert_row(store, app_id, "sign")
    result = wf.move(app_id, at=jst(2018, 5, 21, 10), address="東京都清瀬市見本町２丁目", card_image=image)
    sign_after = cert_row(store, app_id, "sign")
    # VAL-10: signing ② runs to H33.1 = the unchanged user-authentication certificate's expiry
    assert sign_after["serial"] == result["sign_serial"] != sign_before["serial"]
    assert sign_after["not_after"] == auth_before["not_after"] == "2021-01-15T14:59:59+00:00"
    assert cert_row(store, app_id, "auth")["serial"] == auth_before["serial"]       # auth kept
    assert store.certificate_status("sign", sign_before["serial"], jst(2018, 5, 22)).reason == \
        x509.ReasonFlags.superseded
    # the rewritten card holds the new certificate and the new address, and the holder's PINs
    new_image = result["image"]
    cert = read_jpki_ef(new_image, 0x0001, pin="ABC123")
    assert cert.serial_number == sign_after["serial"]
    assert cert.not_valid_after_utc == read_jpki_ef(new_image, 0x000A).not_valid_after_utc
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert any("見本町".encode() in o.value for o in san if isinstance(o, x509.OtherName))
    assert wf.status(app_id, at=jst(2018, 5, 22))["holder"]["address"] == "東京都清瀬市見本町２丁目"


def test_move_without_the_card_leaves_it_with_the_revoked_certificate(wf, store):
    app_id, image = issued(wf)
    old = cert_row(store, app_id, "sign")["serial"]
    result = wf.move(app_id, at=jst(2018, 5, 21), address="東京都清瀬市架空町")
    assert result["image"] is None
    with store.transaction():
        pass
    assert read_jpki_ef(image, 0x0001, pin="ABC123").serial_number == old  # still on the card
    written = wf.write_card(app_id, at=jst(2018, 6, 1), card_image=image)
    assert read_jpki_ef(written, 0x0001, pin="ABC123").serial_number == result["sign_serial"]


# ---------------------------------------------------------------------------------------------
# 更新 (VAL-7, VAL-9, FLOW-RENEW-*)
# ---------------------------------------------------------------------------------------------

def test_renewal_outside_the_window_is_refused_with_the_reason(wf, store):
    app_id, _ = issued(wf)
    before = domain_dump(store)
    with pytest.raises(Refused, match=r"VAL-7: renewal not yet open: the window is 2020-10-15\.\.2021-01-15"):
        wf.renew(app_id, at=jst(2020, 10, 14, 23))
    assert domain_dump(store) == before
    refusal = store.audit_rows(app_id)[-1]
    assert refusal["outcome"] == "refused" and "VAL-7" in refusal["reason"]


def test_certificate_renewal_in_the_window_counts_from_the_old_expiry(wf, store):
    # VAL-9 test vector: renewal on 2020-11-01 gives certificates valid to 2026-01-15
    app_id, image = issued(wf)
    old_auth = cert_row(store, app_id, "auth")
    result = wf.renew(app_id, at=jst(2020, 11, 1, 10), card_image=image)
    assert result.kind == "certificates" and "VAL-7" in result.reason
    new_auth = cert_row(store, app_id, "auth")
    assert new_auth["serial"] != old_auth["serial"]
    assert new_auth["not_after"].startswith("2026-01-15T14:59:59")
    assert cert_row(store, app_id, "sign")["not_after"] == new_auth["not_after"]  # VAL-6
    # VAL-8: at most 5 years 3 months from the actual issue
    assert dt.date(2026, 1, 15) <= policy.max_span_end(dt.date(2020, 11, 1), 5)
    assert store.certificate_status("auth", old_auth["serial"], jst(2020, 11, 2)).status == "revoked"
    assert read_jpki_ef(result.image, 0x000A).serial_number == new_auth["serial"]


def test_card_renewal_is_a_new_application_that_replaces_the_old_card(wf, store):
    # a 14-year-old gets a 5-year card (VAL-2) and no signing certificate (ELIG-2)
    app_id, _ = issued(wf, birth=dt.date(2002, 3, 10), name="試験\u3000翔", sex="1")
    card = store.card(app_id)
    assert card["expires"] == "2021-03-10"
    assert cert_row(store, app_id, "sign") is None
    result = wf.renew(app_id, at=jst(2021, 1, 10, 10))
    assert result.kind == "card" and result.replaces == app_id
    gen = wf.generate(result.id, at=jst(2021, 2, 1, 10))
    # VAL-3: counts from the old expiry. Age 18 on the application date, but before 2022-04-01
    # `current` still uses the seed's 20 (M1, D8): another 5-year card.
    assert gen.card_expires == dt.date(2026, 3, 10)
    assert gen.sign_serial is not None                          # 18 now: eligible (ELIG-2)
    wf.deliver(result.id, at=jst(2021, 2, 10, 10), pins=PINS, identity_check="旧カード")
    old = wf.status(app_id, at=jst(2021, 2, 11))
    assert old["state"] == "collected" and old["replaced_by"] == result.id   # FLOW-RENEW-1 step 8
    assert all(c["status"] == "revoked" for c in old["certificates"])
    assert store.keys(app_id) == {}                                # keys leave with the card


# ---------------------------------------------------------------------------------------------
# 交付 (STATE-3 item 7, ELIG-3, FLOW-PROXY-*)
# ---------------------------------------------------------------------------------------------

def _waiting(wf, **person):
    app_id = wf.apply(at=jst(2016, 5, 1), **{**HANAKO, **person})
    gen = wf.generate(app_id, at=jst(2016, 5, 20))
    return app_id, gen


def _proxy(notice, seal=None, **kw):
    fields = dict(condition="homebound-with-household", relation="household-member",
                  documents=frozenset({"letter-of-authority", "proxy-photo-id", "principal-photo-id",
                                       "household-proof", "cannot-go-out-proof"}),
                  notice_id=notice, seal_certificate_issued=seal)
    fields.update(kw)
    return ProxyHandover(**fields)


def test_proxy_needs_the_seal_certificate_for_a_signing_card_but_not_for_auth_only(wf, store):
    at = jst(2016, 6, 1, 10)
    sign_id, gen = _waiting(wf)
    before = domain_dump(store)
    with pytest.raises(Refused, match="FLOW-PROXY-6"):
        wf.deliver(sign_id, at=at, pins=PINS, identity_check="proxy", proxy=_proxy(gen.notice_id))
    with pytest.raises(Refused, match="FLOW-PROXY-6: .* older than 3 months"):
        wf.deliver(sign_id, at=at, pins=PINS, identity_check="proxy",
                   proxy=_proxy(gen.notice_id, seal=dt.date(2016, 2, 29)))
    assert domain_dump(store) == before
    wf.deliver(sign_id, at=at, pins=PINS, identity_check="proxy", proxy=_proxy(gen.notice_id, seal=dt.date(2016, 3, 1)))
    # FLOW-PROXY-5: an auth-only card (M9: signing certificate declined) needs no seal certificate
    auth_id, gen2 = _waiting(wf, name="見本\u3000一郎", sex="1", decline_sign=True)
    assert gen2.sign_serial is None
    wf.deliver(auth_id, at=at, pins={"auth": "1234", "kenhojo": "1234"}, identity_check="proxy",
               proxy=_proxy(gen2.notice_id))
    delivered = json.loads(store.conn.execute("SELECT proxy FROM deliveries WHERE application_id = ?",
                                              (auth_id,)).fetchone()[0])
    assert delivered["relation"] == "household-member"


@pytest.mark.parametrize("change, rule", [
    (dict(condition="busy"), "FLOW-PROXY-4"),
    (dict(relation="neighbour"), "FLOW-PROXY-3"),
    (dict(notice_id="0000000000000000"), "FLOW-PROXY-2"),
    (dict(documents=frozenset({"letter-of-authority"})), "FLOW-PROXY-3: missing"),
])
def test_proxy_refusals_name_their_rule(wf, change, rule):
    app_id, gen = _waiting(wf, decline_sign=True)
    proxy = _proxy(gen.notice_id, **change) if "notice_id" not in change else _proxy(change["notice_id"])
    with pytest.raises(Refused, match=rule):
        wf.deliver(app_id, at=jst(2016, 6, 1), pins={"auth": "1234", "kenhojo": "1234"}, identity_check="x",
                   proxy=proxy)


def test_under_15_pins_are_set_by_the_legal_representative(wf, store):
    app_id, gen = _waiting(wf, birth=dt.date(2005, 1, 1), name="仮名\u3000桜")
    assert gen.sign_serial is None and "ELIG-2" in gen.sign_decision
    with pytest.raises(Refused, match="ELIG-3"):
        wf.deliver(app_id, at=jst(2016, 6, 1), pins=PINS, identity_check="x", pins_set_by="holder")
    image = wf.deliver(app_id, at=jst(2016, 6, 1), pins={"auth": "4321", "kenhojo": "4321"}, identity_check="母の運転免許証",
                       pins_set_by="legal_representative")
    assert store.conn.execute("SELECT pins_set_by FROM deliveries").fetchone()[0] == "legal_representative"
    card = Card(image)
    card.power_on()
    tx(card, "00A4040C0A" + AID_JPKI)
    assert tx(card, "00A4020C020018")[1] == "9000"
    assert tx(card, "0020008004" + b"4321".hex())[1] == "9000"


def test_guardianship_gets_no_signing_certificate(wf, store):
    app_id, gen = _waiting(wf, guardianship=True)
    assert gen.sign_serial is None and "guardianship" in gen.sign_decision
    assert wf.status(app_id, at=jst(2016, 5, 21))["sign_cert"] is None


def test_second_deliver_and_bad_pins_are_refused_without_change(wf, store):
    app_id, image = issued(wf)
    before = domain_dump(store)
    with pytest.raises(IllegalState, match=r"card [0-9A-Z]{16} is active \(交付済/有効\); deliver needs awaiting_delivery"):
        wf.deliver(app_id, at=jst(2016, 6, 2), pins=PINS, identity_check="x")
    assert domain_dump(store) == before
    other, _ = _waiting(wf, name="例示\u3000陽菜")
    with pytest.raises(BadInput, match="signing password"):
        wf.deliver(other, at=jst(2016, 6, 2), pins={**PINS, "sign": "abc"}, identity_check="x")
    with pytest.raises(BadInput, match="4 digits"):
        wf.deliver(other, at=jst(2016, 6, 2), pins={**PINS, "auth": "12345"}, identity_check="x")
    with pytest.raises(BadInput, match="identity check"):
        wf.deliver(other, at=jst(2016, 6, 2), pins=PINS, identity_check=" ")


def test_write_fails_rolls_back_the_delivery(wf, store):
    app_id, _ = _waiting(wf)

    def broken(image):
        raise OSError("disk full")

    with pytest.raises(OSError):
        wf.deliver(app_id, at=jst(2016, 6, 1), pins=PINS, identity_check="x", write=broken)
    assert store.card(app_id)["state"] == "awaiting_delivery"


# ---------------------------------------------------------------------------------------------
# bad input, illegal steps, clock
# ---------------------------------------------------------------------------------------------

def test_unknown_and_malformed_ids(wf):
    with pytest.raises(NotFound, match="no application 0000000000000000"):
        wf.suspend("0000000000000000", at=jst(2017, 1, 1))
    with pytest.raises(BadInput, match="check character"):
        wf.status("0000000000000001", at=jst(2017, 1, 1))
    with pytest.raises(BadInput, match="16 characters"):
        wf.generate("abc", at=jst(2017, 1, 1))


def test_impossible_inputs_at_apply(wf):
    with pytest.raises(BadInput, match="after the application date"):
        wf.apply(at=jst(2016, 5, 1), **{**HANAKO, "birth": dt.date(2016, 5, 2)})
    with pytest.raises(BadInput, match="sex"):
        wf.apply(at=jst(2016, 5, 1), **{**HANAKO, "sex": "3"})
    with pytest.raises(BadInput, match="timezone-aware"):
        wf.apply(at=dt.datetime(2016, 5, 1), **HANAKO)
    with pytest.raises(BadInput, match="name_alt"):
        wf.apply(at=jst(2016, 5, 1), name_alt="01", **HANAKO)


def test_illegal_steps_name_the_state_and_change_nothing(wf, store):
    app_id = wf.apply(at=jst(2016, 5, 1), **HANAKO)
    before = domain_dump(store)
    for call, pattern in (
        (lambda: wf.suspend(app_id, at=jst(2016, 5, 2)), "suspend refused: card .* is applied \\(申請\\)"),
        (lambda: wf.resume(app_id, at=jst(2016, 5, 2)), "is applied"),
        (lambda: wf.deliver(app_id, at=jst(2016, 5, 2), pins=PINS, identity_check="x"), "is applied"),
        (lambda: wf.collect(app_id, at=jst(2016, 5, 2)), "collect needs abolished or revoked"),
        (lambda: wf.renew(app_id, at=jst(2016, 5, 2)), "is applied"),
    ):
        with pytest.raises(IllegalState, match=pattern):
            call()
    assert domain_dump(store) == before
    # STATE-3(8): one live card per person; a second application is refused
    with pytest.raises(Refused, match="STATE-3"):
        wf.apply(at=jst(2016, 5, 3), **HANAKO)


def test_unconfirmed_substitute_characters_stop_at_reception(wf):
    app_id = wf.apply(at=jst(2016, 5, 1), alt_confirmed=False, **HANAKO)
    with pytest.raises(Refused, match="FLOW-3"):
        wf.generate(app_id, at=jst(2016, 5, 2))


def test_the_clock_cannot_run_backwards_on_a_card(wf):
    app_id, _ = issued(wf)
    wf.suspend(app_id, at=jst(2017, 1, 10))
    with pytest.raises(Refused, match="clock"):
        wf.resume(app_id, at=jst(2017, 1, 9))


def test_expired_card_counts_as_abolished_and_only_reissue_helps(wf, store):
    app_id, _ = issued(wf)
    at = jst(2026, 1, 16, 0, 0, 1)  # the day after the card's expiry (D5)
    assert wf.status(app_id, at=at)["state"] == "expired"
    assert wf.status(app_id, at=at)["auth_cert"]["status"] == "expired"
    with pytest.raises(Refused, match="VAL-9"):
        wf.renew(app_id, at=at)
    with pytest.raises(IllegalState, match="VAL-12"):
        wf.suspend(app_id, at=at)
    new_id = wf.reissue(app_id, at=at, reason="expired")
    gen = wf.generate(new_id, at=jst(2026, 2, 1, 10))
    assert gen.card_expires == dt.date(2036, 1, 15)  # D6: a fresh issue counts from its own date
    assert wf.status(app_id, at=jst(2026, 2, 2))["state"] == "abolished"


# ---------------------------------------------------------------------------------------------
# 再発行, 廃止 → 回収 → 廃棄, 失効
# ---------------------------------------------------------------------------------------------

def test_reissue_after_loss_revokes_as_key_compromise(wf, store):
    app_id, _ = issued(wf)
    wf.suspend(app_id, at=jst(2017, 4, 1), caller=Basic4(**HANAKO))
    new_id = wf.reissue(app_id, at=jst(2017, 4, 2), reason="lost")
    assert {c["reason"] for c in wf.status(app_id, at=jst(2017, 4, 3))["certificates"]} == {"keyCompromise"}
    wf.generate(new_id, at=jst(2017, 4, 20))
    wf.deliver(new_id, at=jst(2017, 5, 1), pins=PINS, identity_check="x")
    assert wf.status(new_id, at=jst(2017, 5, 2))["kind"] == "reissue"
    with pytest.raises(IllegalState, match="abolished"):
        wf.destroy(app_id, at=jst(2017, 5, 3))
    wf.collect(app_id, at=jst(2017, 5, 3))
    wf.destroy(app_id, at=jst(2017, 5, 4))
    assert [e["to_state"] for e in store.card_events(app_id)][-3:] == ["abolished", "collected", "destroyed"]


def test_death_revokes_everything_and_blocks_new_applications(wf, store):
    app_id, _ = issued(wf)
    result = wf.revoke(app_id, at=jst(2019, 1, 1), reason="death")
    assert result["revoked_cards"] == [app_id]
    status = wf.status(app_id, at=jst(2019, 1, 2))
    assert status["state"] == "revoked" and status["holder"]["resident_status"] == "deceased"
    assert {c["reason"] for c in status["certificates"]} == {"cessationOfOperation"}
    with pytest.raises(Refused, match="M10"):
        wf.apply(at=jst(2019, 2, 1), **HANAKO)


def test_number_change_keeps_the_history(wf, store):
    app_id, _ = issued(wf)
    person = store.card(app_id)["person_id"]
    first = store.individual_number(person)
    wf.revoke(app_id, at=jst(2019, 1, 1), reason="number-change")
    second = store.individual_number(person)
    history = store.number_history(person)
    assert first != second and is_valid_individual_number(second)            # rules.md §20 M2
    assert [h["number"] for h in history] == [first, second]                     # NUM-7
    assert history[0]["valid_until"] is not None and history[1]["valid_until"] is None
    new_id = wf.apply(at=jst(2019, 1, 5), **HANAKO)   # the same person applies for a new card
    assert store.card(new_id)["person_id"] == person


# ---------------------------------------------------------------------------------------------
# audit (SEC-8) and invariants (STATE-3)
# ---------------------------------------------------------------------------------------------

def test_audit_records_everything_and_never_a_number_or_pin(wf, store):
    app_id, _ = issued(wf, pins={"auth": "9731", "sign": "ZQX987", "kenhojo": "8642"})
    wf.status(app_id, at=jst(2016, 6, 2), reveal=True)
    with pytest.raises(WorkflowError):
        wf.renew(app_id, at=jst(2016, 6, 3))
    rows = store.audit_rows()
    assert [r["operation"] for r in rows] == ["apply", "generate", "deliver", "status --reveal", "renew"]
    assert all(r["operator"] == "op-17" and r["terminal"] == "counter-3" for r in rows)
    number = store.individual_number(store.card(app_id)["person_id"])
    text = json.dumps([rows, [tuple(r) for r in store.conn.execute("SELECT * FROM person_changes")]],
                      ensure_ascii=False, default=str)
    for secret in (number, "9731", "ZQX987", "8642"):
        assert secret not in text


def test_state_invariants_hold_across_a_history(wf, store):
    ids = [issued(wf)[0]]
    ids.append(issued(wf, name="検証\u3000健太", sex="1", birth=dt.date(2004, 7, 7))[0])
    wf.suspend(ids[0], at=jst(2017, 1, 1))
    wf.move(ids[1], at=jst(2017, 2, 1), address="東京都清瀬市検証町")
    for app_id in ids:
        card = store.card(app_id)
        certs = {c["ca_kind"]: c for c in store.certificates_of(app_id, include_revoked=False)}
        expiry = policy.expiry_instant(dt.date.fromisoformat(card["expires"])).astimezone(dt.timezone.utc)
        auth_end = dt.datetime.fromisoformat(certs["auth"]["not_after"])
        assert auth_end <= expiry                                                   # VAL-5
        if "sign" in certs:
            assert dt.datetime.fromisoformat(certs["sign"]["not_after"]) <= auth_end  # VAL-6
        if card["state"] == "suspended":
            assert all(c["status"] == "hold" for c in certs.values())               # STATE-3(3)
        for c in store.certificates_of(app_id):                                   # VAL-8
            start = policy.jst_date(dt.datetime.fromisoformat(c["not_before"]))
            end = policy.jst_date(dt.datetime.fromisoformat(c["not_after"]))
            assert end <= policy.max_span_end(start, 5)


def test_pre_made_keys_are_used_and_the_stored_image_matches_the_delivered_one(wf, store, key_pool):
    keys = CardKeys(*key_pool[:KEYS_PER_CARD])
    app_id = wf.apply(at=jst(2016, 5, 1), **HANAKO)
    wf.generate(app_id, at=jst(2016, 5, 20), keys=keys)
    # the chip image as personalised; the store drops it (and every private key) at 交付 (cardwrite.py)
    factory = CardImage.from_json(json.loads(store.card(app_id)["image"]))
    image = wf.deliver(app_id, at=jst(2016, 6, 1), pins=PINS, identity_check="x")
    assert read_jpki_ef(image, 0x000A).public_key() == key_pool[0].public_key()

    def without_pins(img):
        doc = img.to_json()
        doc["meta"].pop("secrets", None)
        for app in doc["applications"]:
            app["efs"] = [ef for ef in app["efs"] if ef["type"] != "pin"]
        return doc

    assert without_pins(factory) == without_pins(image)   # PINs are the only counter-time data
