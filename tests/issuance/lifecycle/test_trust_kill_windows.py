"""Trust boundaries, item 4: the store and the card file agree after a kill -9 at any point.

Each card-writing command (deliver, move --card, renew --card, write-card) runs as a real process
killed by fault injection (MYNAEMU_TEST_KILL_AT, issuance/lifecycle/cardwrite.py: os._exit at that exact
point, no clean-up) right before COMMIT, right after COMMIT (before the rename) and right after
the rename (before the pending record is cleared). Afterwards either nothing happened, or the
store records the pending write and the next command (`issue status`) finishes it; in no state
without a pending record does the card hold a certificate other than the store's current ones.
A certificate is not "good" to OCSP/the kiosk before its card is handed over."""
import datetime as dt
import itertools
import os
import subprocess
import sys

import pytest
from cryptography import x509

from mynaemu.card.core import Card
from mynaemu.card.image import CardImage
from mynaemu.issuance.pki import revocation as rv
from mynaemu.issuance.pki.ca import default_test_pki
from mynaemu.issuance.pki.keys import generate_rsa_key
from mynaemu.issuance.store import Store
from mynaemu.issuance.lifecycle.workflow import Workflow

JST = dt.timezone(dt.timedelta(hours=9))
CLI = [sys.executable, "-m", "mynaemu.tools.cli", "issue"]
PINS = {"auth": "1234", "sign": "ABC123", "kenhojo": "1234"}
WINDOWS = ("before-commit", "after-commit", "after-rename")


def at(*args):
    return dt.datetime(*args, tzinfo=JST)


@pytest.fixture(scope="module")
def pool():
    default_test_pki()
    return [generate_rsa_key(2048) for _ in range(10)]


@pytest.fixture
def home(tmp_path, issue_staff):
    issue_staff(tmp_path / "home")  # every issue command authenticates (issue 13)
    return tmp_path / "home"


def workflow(store, pool):
    cycle = itertools.cycle(pool)
    return Workflow(store, operator="t", terminal="t", key_factory=lambda: next(cycle))


def waiting(home, pool):
    """A card generated and waiting for 交付 (birth 04-02: the auth certificate ends 2021-04-02)."""
    with Store.open(home) as store:
        wf = workflow(store, pool)
        app_id = wf.apply(name="中断\u3000花子", birth=dt.date(1990, 4, 2), sex="2", address="東京都清瀬市１丁目",
                          at=at(2016, 5, 1))
        wf.generate(app_id, at=at(2016, 5, 2, 10))
    return app_id


def delivered(home, pool, card):
    app_id = waiting(home, pool)
    with Store.open(home) as store:
        workflow(store, pool).deliver(app_id, at=at(2016, 5, 10, 10), pins=PINS, identity_check="x", output=card)
    return app_id


def cli(home, *args, kill=None):
    env = {**os.environ, "MYNAEMU_HOME": str(home)}
    env.pop("MYNAEMU_TEST_KILL_AT", None)
    if kill:
        env["MYNAEMU_TEST_KILL_AT"] = kill
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def card_serials(path):
    image = CardImage.load(path)
    efs = image.application("jpki").efs
    out = {"auth": x509.load_der_x509_certificate(efs[0x000A].data).serial_number}
    out["sign"] = x509.load_der_x509_certificate(efs[0x0001].data).serial_number if 0x0001 in efs else None
    return out


def store_view(home, app_id):
    with Store.open(home) as store:
        current = {}
        for kind in ("auth", "sign"):
            row = store.current_certificate(app_id, kind)
            current[kind] = row["serial"] if row is not None and row["status"] != "revoked" else None
        pending = store.conn.execute("SELECT count(*) FROM card_writes WHERE application_id = ?", (app_id,)).fetchone()[0]
        return store.card(app_id)["state"], current, pending


def agree(home, app_id, card):
    """No pending write: the card holds exactly the store's current certificates (none revoked)."""
    state, current, pending = store_view(home, app_id)
    assert pending == 0
    assert card_serials(card) == current
    return state


def staged_files(card):
    return sorted(p.name for p in card.parent.glob(f".{card.name}.staged-*"))


# ---------------------------------------------------------------------------------------------
# deliver
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("window", WINDOWS)
def test_deliver_killed_at_each_window(home, tmp_path, pool, window):
    card = tmp_path / "card.json"
    app_id = waiting(home, pool)
    args = ("deliver", app_id, "--auth-pin", "1234", "--sign-pin", "ABC123", "--kenhojo-pin", "1234",
            "-o", str(card), "--at", "2016-05-10T10:00")
    assert cli(home, *args, kill=window).returncode == 137
    state, _, pending = store_view(home, app_id)
    if window == "before-commit":
        # nothing happened: still 交付待ち, no card, the keys still in custody; delivering again works
        assert (state, pending, card.exists()) == ("awaiting_delivery", 0, False)
        with Store.open(home) as store:
            assert store.keys(app_id)
        assert cli(home, *args).returncode == 0
        assert staged_files(card) == []                      # the orphan of the killed run is gone
    elif window == "after-commit":
        # handed over in the store, the card still only staged: the store knows (pending record)
        assert (state, pending, card.exists()) == ("active", 1, False)
        assert cli(home, "status", app_id, "--at", "2016-05-11").returncode == 0
    else:
        assert (state, pending, card.exists()) == ("active", 1, True)
        assert cli(home, "status", app_id, "--at", "2016-05-11").returncode == 0
    assert agree(home, app_id, card) == "active"
    assert staged_files(card) == []
    with Store.open(home) as store:
        assert store.keys(app_id) == {}


# ---------------------------------------------------------------------------------------------
# move --card, renew --card, write-card
# ---------------------------------------------------------------------------------------------

REWRITES = {
    "move": lambda app_id, card: ("move", app_id, "--address", "東京都清瀬市２丁目", "--card", str(card),
                                  "--at", "2016-06-01"),
    "renew": lambda app_id, card: ("renew", app_id, "--card", str(card), "--at", "2021-02-01"),
    "write-card": lambda app_id, card: ("write-card", app_id, "--card", str(card), "--at", "2016-06-02"),
}


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("command", sorted(REWRITES))
def test_card_rewrites_killed_at_each_window(home, tmp_path, pool, command, window):
    card = tmp_path / "card.json"
    app_id = delivered(home, pool, card)
    if command == "write-card":
        # a 異動 done without the card: the card keeps the superseded signing certificate
        assert cli(home, "move", app_id, "--address", "東京都清瀬市３丁目", "--at", "2016-06-01").returncode == 0
    before_card = card.read_bytes()
    _, before_store, _ = store_view(home, app_id)
    assert cli(home, *REWRITES[command](app_id, card), kill=window).returncode == 137
    _, current, pending = store_view(home, app_id)
    if window == "before-commit":
        assert pending == 0 and current == before_store      # the store did not change ...
        assert card.read_bytes() == before_card              # ... nor did the card
        if command != "write-card":
            agree(home, app_id, card)
    elif window == "after-commit":
        # the card file still holds the revoked certificate, but the store knows the write is pending
        assert pending == 1 and card.read_bytes() == before_card
        assert cli(home, "status", app_id, "--at", "2021-02-02").returncode == 0
        agree(home, app_id, card)
        assert card_serials(card) != card_serials_of(before_card, tmp_path)
    else:
        assert pending == 1 and card_serials(card) == current
        assert cli(home, "status", app_id, "--at", "2021-02-02").returncode == 0
        agree(home, app_id, card)
    if window != "before-commit":
        assert staged_files(card) == []
    # whatever the window, the holder's card is usable for another write afterwards, which also
    # removes the orphan a run killed before its COMMIT left next to the card (never certified)
    assert cli(home, "write-card", app_id, "--card", str(card), "--at", "2021-02-03").returncode == 0
    agree(home, app_id, card)
    assert staged_files(card) == []


def card_serials_of(data, tmp_path):
    path = tmp_path / "snapshot.json"
    path.write_bytes(data)
    return card_serials(path)


def test_a_try_spent_on_the_old_file_before_the_repair_is_not_given_back(home, tmp_path, pool):
    card = tmp_path / "card.json"
    app_id = delivered(home, pool, card)
    assert cli(home, *REWRITES["move"](app_id, card), kill="after-commit").returncode == 137
    # the holder uses the old file meanwhile: one wrong user-authentication PIN
    old = Card.from_file(card)
    old.power_on()
    assert old.transmit(bytes.fromhex("00A4040C0AD392F000260100000001"))[-2:] == b"\x90\x00"
    assert old.transmit(bytes.fromhex("00A4020C020018"))[-2:] == b"\x90\x00"
    assert old.transmit(bytes.fromhex("002000800439393939")) == bytes.fromhex("63C2")
    assert cli(home, "status", app_id, "--at", "2016-06-02").returncode == 0
    agree(home, app_id, card)
    assert CardImage.load(card).pin("jpki", 0x0018).remaining == 2


# ---------------------------------------------------------------------------------------------
# not "good" before 交付
# ---------------------------------------------------------------------------------------------

def test_a_certificate_is_unknown_to_ocsp_until_its_card_is_delivered(home, tmp_path, pool):
    app_id = waiting(home, pool)
    with Store.open(home) as store:
        serial = store.current_certificate(app_id, "auth")["serial"]
        assert store.certificate_status("auth", serial, at(2016, 5, 5)).status == rv.UNKNOWN
        workflow(store, pool).deliver(app_id, at=at(2016, 5, 10, 10), pins=PINS, identity_check="x")
        assert store.certificate_status("auth", serial, at(2016, 5, 9)).status == rv.UNKNOWN   # as of before
        assert store.certificate_status("auth", serial, at(2016, 5, 11)).status == rv.GOOD
