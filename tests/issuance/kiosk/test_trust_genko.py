"""Trust boundaries, item 6: 現行方式 and the 条例利用AP enrolment honour the card's state (STATE-1).

Found: after 一時停止 and even after 失効 the kiosk issued a 住民票 by 利用者ID (現行方式), and
`mynaemu kiosk enrol` wrote the 条例利用AP onto a suspended card. Must: refuse a card that is not
active — suspended → 5 (cert-hold), abolished / revoked → 5 (cert-revoked), expired → 6 — with
nothing written to the card and no PIN try spent. Driven through the real CLI over a real store.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from mynaemu.card.image import CardImage
from mynaemu.issuance.pki.keys import generate_rsa_key
from mynaemu.issuance.personas import DEFAULT_PINS, synthetic_identity
from mynaemu.issuance.policy import JST
from mynaemu.issuance.store import Store
from mynaemu.tools.cli import main

T = _dt.datetime(2026, 3, 2, 12, 0, tzinfo=JST)
GENKO_PIN = "4321"
JOREI_JUMINHYO_PIN = 0x0011
_seeds = itertools.count(100)


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    """A store and a small key pool; `card()` issues and delivers a fresh adult card."""
    home = tmp_path_factory.mktemp("genko-home")
    pool = itertools.cycle([generate_rsa_key(2048) for _ in range(3)])

    def workflow(store):
        from mynaemu.issuance.lifecycle.workflow import Workflow

        return Workflow(store, operator="test", terminal="test", key_factory=lambda: next(pool))

    def card(folder: Path) -> tuple[str, Path]:
        with Store.open(home) as store:
            wf = workflow(store)
            ident = synthetic_identity(random.Random(next(_seeds)), age=40, on=T.date())
            app_id = wf.apply(name=ident.name, birth=ident.birth, sex=ident.sex, address=ident.address,
                              at=T - _dt.timedelta(days=8))
            wf.generate(app_id, at=T - _dt.timedelta(days=1))
            path = folder / f"{app_id}.json"
            wf.deliver(app_id, at=T - _dt.timedelta(hours=20), pins=dict(DEFAULT_PINS), identity_check="test",
                       write=lambda img: img.save(path))
        return app_id, path

    def change(app_id: str, operation: str, **kwargs):
        with Store.open(home) as store:
            getattr(workflow(store), operation)(app_id, at=T - _dt.timedelta(hours=1), **kwargs)

    def expires(app_id: str) -> _dt.date:
        with Store.open(home) as store:
            return _dt.date.fromisoformat(store.card(app_id)["expires"])

    return home, card, change, expires


def _cli(home: Path, *args):
    return CliRunner().invoke(main, list(args), env={"MYNAEMU_HOME": str(home)})


def _enrol(home, card, at=None):
    when = ["--at", at.isoformat()] if at is not None else []   # default: now, while the card is active
    return _cli(home, "kiosk", "enrol", "--card", str(card), "--pin-juminhyo", GENKO_PIN, *when)


def _genko(home, card, out, at=T):
    return _cli(home, "kiosk", "issue", "--card", str(card), "--pin", GENKO_PIN, "--document", "juminhyo",
                "--method", "genko", "-o", str(out), "--at", at.isoformat(), "--json")


def _enrolled(office, tmp_path) -> tuple[str, Path]:
    home, card, _, _ = office
    app_id, path = card(tmp_path)
    result = _enrol(home, path)
    assert result.exit_code == 0, result.output
    return app_id, path


def test_genko_still_works_for_an_active_card(office, tmp_path):
    home = office[0]
    _, card = _enrolled(office, tmp_path)
    out = tmp_path / "ok.pdf"
    result = _genko(home, card, out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF-")


@pytest.mark.parametrize("operation, kwargs, code, reason", [
    ("suspend", {}, 5, "cert-hold"),                                   # 一時停止
    ("abolish", {}, 5, "cert-revoked"),                                # 廃止
    ("revoke", {"reason": "number-change"}, 5, "cert-revoked"),        # 失効 (NUM-7)
])
def test_genko_refuses_a_card_that_is_not_active(office, tmp_path, operation, kwargs, code, reason):
    home, _, change, _ = office
    app_id, card = _enrolled(office, tmp_path)
    change(app_id, operation, **kwargs)
    before = card.read_bytes()
    out = tmp_path / "refused.pdf"
    result = _genko(home, card, out)
    assert result.exit_code == code, result.output
    assert json.loads(result.output.splitlines()[0])["reason"] == reason
    assert not out.exists()
    assert card.read_bytes() == before                                  # nothing written to the card
    assert CardImage.load(card).pin("jorei", JOREI_JUMINHYO_PIN).remaining == 3   # no try spent


def test_genko_refuses_an_expired_card(office, tmp_path):
    home, _, _, expires = office
    app_id, card = _enrolled(office, tmp_path)
    after = _dt.datetime.combine(expires(app_id) + _dt.timedelta(days=1), _dt.time(12, 0), JST)
    before = card.read_bytes()
    out = tmp_path / "expired.pdf"
    result = _genko(home, card, out, at=after)
    assert result.exit_code == 6, result.output
    assert json.loads(result.output.splitlines()[0])["reason"] == "cert-expired"
    assert not out.exists() and card.read_bytes() == before


@pytest.mark.parametrize("operation, kwargs, code", [
    ("suspend", {}, 5),
    ("abolish", {}, 5),
    ("revoke", {"reason": "number-change"}, 5),
])
def test_enrol_refuses_a_card_that_is_not_active_and_writes_nothing(office, tmp_path, operation, kwargs, code):
    home, card, change, _ = office
    app_id, path = card(tmp_path)
    change(app_id, operation, **kwargs)
    before = path.read_bytes()
    result = _enrol(home, path, at=T)
    assert result.exit_code == code, result.output
    assert "refused [cert-" in result.output
    assert path.read_bytes() == before
    assert "jorei" not in {a.name for a in CardImage.load(path).applications}


def test_enrol_refuses_an_expired_card(office, tmp_path):
    home, card, _, expires = office
    app_id, path = card(tmp_path)
    after = _dt.datetime.combine(expires(app_id) + _dt.timedelta(days=1), _dt.time(12, 0), JST)
    before = path.read_bytes()
    result = _enrol(home, path, at=after)
    assert result.exit_code == 6, result.output
    assert "cert-expired" in result.output and path.read_bytes() == before


def test_genko_after_resume_works_again(office, tmp_path):
    home, _, change, _ = office
    app_id, card = _enrolled(office, tmp_path)
    change(app_id, "suspend")
    assert _genko(home, card, tmp_path / "held.pdf").exit_code == 5
    with Store.open(home) as store:
        from mynaemu.issuance.lifecycle.workflow import Workflow

        Workflow(store, operator="test", terminal="test").resume(app_id, at=T - _dt.timedelta(minutes=30))
    result = _genko(home, card, tmp_path / "resumed.pdf")
    assert result.exit_code == 0, result.output


def test_genko_checks_the_card_the_ap_is_on_not_another_card_of_the_person(office, tmp_path):
    """A 利用者ID belongs to the person: after a reissue the old card (abolished) still carries
    it, while the person's new card is active. The AP names its own card (jorei DF63), so the
    old card is refused."""
    home, _, _, _ = office
    app_id, old_card = _enrolled(office, tmp_path)
    from mynaemu.card.apps import jorei

    ef = CardImage.load(old_card).application("jorei").efs[jorei.EF_USER_ID].data
    with Store.open(home) as store:
        assert jorei.parse_user_id(ef)["card_serial"] == store.card(app_id)["serial"]
        from mynaemu.issuance.lifecycle.workflow import Workflow

        pool = itertools.cycle([generate_rsa_key(2048) for _ in range(2)])
        wf = Workflow(store, operator="test", terminal="test", key_factory=lambda: next(pool))
        new_id = wf.reissue(app_id, at=T - _dt.timedelta(hours=3), reason="lost")
        wf.generate(new_id, at=T - _dt.timedelta(hours=2))
        wf.deliver(new_id, at=T - _dt.timedelta(hours=1), pins=dict(DEFAULT_PINS), identity_check="test",
                   write=lambda img: img.save(tmp_path / "new.json"))
        assert store.card(new_id)["state"] == "active" and store.card(app_id)["state"] == "abolished"
    before = old_card.read_bytes()
    result = _genko(home, old_card, tmp_path / "old.pdf")
    assert result.exit_code == 5, result.output
    assert json.loads(result.output.splitlines()[0])["reason"] == "cert-revoked"
    assert old_card.read_bytes() == before and not (tmp_path / "old.pdf").exists()


def test_a_forged_card_serial_of_another_person_is_refused(office, tmp_path):
    """The card serial on the AP must be a card of the 利用者ID's person."""
    home, card, _, _ = office
    _, mine = _enrolled(office, tmp_path)
    (tmp_path / "other").mkdir()
    other_id, _ = card(tmp_path / "other")
    from mynaemu.card.apps import jorei

    image = CardImage.load(mine)
    ef = image.application("jorei").efs[jorei.EF_USER_ID]
    ident = jorei.parse_user_id(ef.data)
    with Store.open(home) as store:
        other_serial = store.card(other_id)["serial"]
    ef.data = jorei.encode_user_id(ident["user_id"], ident["municipality_code"], other_serial)
    image.save(mine)
    result = _genko(home, mine, tmp_path / "x.pdf")
    assert result.exit_code == 11, result.output
    assert json.loads(result.output.splitlines()[0])["reason"] == "resident-unknown"


def test_jorei_card_serial_layout():
    from mynaemu.card import tlv
    from mynaemu.card.apps import jorei

    ef = jorei.encode_user_id("ABCDEF0123456789", "13221", "012345678901234")
    assert jorei.parse_user_id(ef) == {"municipality_code": "13221", "user_id": "ABCDEF0123456789",
                                       "card_serial": "012345678901234"}
    assert "card_serial" not in jorei.parse_user_id(jorei.encode_user_id("ABCDEF0123456789", "13221"))
    for bad in ("12345678901234", "1234567890123456", "12345678901234X", 123456789012345):
        with pytest.raises(ValueError):
            jorei.encode_user_id("ABCDEF0123456789", "13221", bad)
    twice = tlv.encode(jorei.T_USER_ID, tlv.expect(ef, jorei.T_USER_ID).value
                       + tlv.encode(jorei.T_CARD, b"012345678901234"))
    with pytest.raises(ValueError):
        jorei.parse_user_id(twice)
    with pytest.raises(ValueError):
        jorei.parse_user_id(tlv.encode(jorei.T_USER_ID, tlv.expect(ef, jorei.T_USER_ID).value[:-15] + b"01234567890123X"))


def test_genko_and_enrol_honour_the_card_state_on_postgresql(tmp_path, monkeypatch, issue_staff):
    from tests.support.pg import fresh_pg_url

    with fresh_pg_url(skip_without=True) as url:
        home = tmp_path / "home"
        monkeypatch.delenv("MYNAEMU_DB", raising=False)
        issue_staff(db=url)  # every issue command authenticates (issue 13)

        def run(*args, code=0):
            result = CliRunner().invoke(main, list(args), env={"MYNAEMU_HOME": str(home)})
            assert result.exit_code == code, (args, result.output)
            return result

        cards = []
        for name in ("番号\u3000一郎", "番号\u3000二郎"):
            app_id = json.loads(run("issue", "--db", url, "apply", "--name", name, "--birth", "1985-07-07", "--sex",
                                    "1", "--address", "東京都清瀬市試験町", "--at", "2026-05-01", "--json").stdout)["id"]
            run("issue", "--db", url, "generate", app_id, "--at", "2026-05-02T10:00")
            card = tmp_path / f"{len(cards)}.json"
            run("issue", "--db", url, "deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123",
                "--kenhojo-pin", "1234", "-o", str(card), "--at", "2026-05-10")
            cards.append((app_id, card))
        (first, enrolled), (second, plain) = cards
        run("kiosk", "enrol", "--db", url, "--card", str(enrolled), "--pin-juminhyo", GENKO_PIN)
        run("issue", "--db", url, "suspend", first, "--at", "2026-05-11")
        run("issue", "--db", url, "suspend", second, "--at", "2026-05-11")
        out = tmp_path / "held.pdf"
        held = run("kiosk", "issue", "--db", url, "--card", str(enrolled), "--pin", GENKO_PIN, "--document",
                   "juminhyo", "--method", "genko", "-o", str(out), "--at", "2026-05-12T12:00:00+09:00", "--json",
                   code=5)
        assert json.loads(held.output.splitlines()[0])["reason"] == "cert-hold" and not out.exists()
        before = plain.read_bytes()
        refused = run("kiosk", "enrol", "--db", url, "--card", str(plain), "--pin", GENKO_PIN,
                      "--at", "2026-05-12T12:00:00+09:00", code=5)
        assert "cert-hold" in refused.output and plain.read_bytes() == before
