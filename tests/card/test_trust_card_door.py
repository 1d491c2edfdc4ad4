"""A card is in one reader at a time (trust-boundaries issue, item 3).

Whoever powers a card image - the in-process Card, `mynaemu card apdu`, `mynaemu card serve`,
the kiosk with --card, the back office rewriting a card file - holds an exclusive lock on it
for the whole session; a second door waits (bounded) and then gets "card in use", never a
free PIN try. The lock is on the real file behind a symlink, survives the atomic save's
rename, and dies with a SIGKILLed holder.
"""
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mynaemu.card import image as image_mod
from mynaemu.card.core import Card
from mynaemu.card.image import CardImage, CardImageError, CardInUse, lock_path_for
from mynaemu.issuance.personas import build_persona
from mynaemu.tools.cli import main

SELECT_J = "00A4040C0AD392F000260100000001"
SELECT_PIN = "00A4020C020018"          # jpki 利用者証明用 PIN, 3 tries, "1234"
WRONG = "0020008004" + b"9999".hex()
RIGHT = "0020008004" + b"1234".hex()
CLI = [sys.executable, "-m", "mynaemu.tools.cli"]


@pytest.fixture(scope="module")
def adult_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("door") / "adult.json"
    build_persona("adult", seed=11)[0].save(path)
    return path.read_bytes()


@pytest.fixture
def card_file(tmp_path, adult_json):
    path = tmp_path / "card.json"
    path.write_bytes(adult_json)
    return path


def remaining(path) -> int:
    return CardImage.load(path).pin("jpki", 0x0018).remaining


def cli(*args, timeout=60):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


# -- many processes, one card -----------------------------------------------------------------

def test_twelve_parallel_card_apdu_processes_never_spend_more_than_the_limit(card_file):
    procs = [subprocess.Popen(CLI + ["card", "apdu", str(card_file), SELECT_J, SELECT_PIN, WRONG],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(12)]
    answers, in_use = [], 0
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            answers.append(out.split()[-1])
        else:
            # the only acceptable failure: the card stayed in another reader beyond the wait
            assert proc.returncode == 1 and "card in use" in err and len(err.strip().splitlines()) == 1, err
            in_use += 1
    # One process at a time: each counter value is answered exactly once, then 6984 (blocked).
    assert sorted(a for a in answers if a.startswith("63C")) == ["63C0", "63C1", "63C2"], answers
    assert all(a in ("63C0", "63C1", "63C2", "6984") for a in answers), answers
    assert len(answers) + in_use == 12
    assert remaining(card_file) == 0
    # The right PIN after the limit is refused: the card is blocked (spec §4.2).
    done = cli("card", "apdu", card_file, SELECT_J, SELECT_PIN, RIGHT)
    assert done.returncode == 0 and done.stdout.split()[-1] == "6984"
    assert remaining(card_file) == 0


def test_parallel_wrong_and_right_pins_follow_one_serial_history(card_file):
    """Wrong and right PINs mixed: every answer fits a one-at-a-time order (no try is free)."""
    apdus = [WRONG] * 8 + [RIGHT] * 2
    procs = [subprocess.Popen(CLI + ["card", "apdu", str(card_file), SELECT_J, SELECT_PIN, a],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in apdus]
    results = []
    for apdu, proc in zip(apdus, procs):
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            results.append((apdu, out.split()[-1]))
        else:
            assert "card in use" in err, err
    # Replay: the answers must be producible by some serial order. A wrong PIN answers the
    # counter after it; no two wrong tries answer the same value without a right PIN between.
    wrong_answers = sorted((sw for a, sw in results if a == WRONG and sw.startswith("63C")), reverse=True)
    rights_ok = sum(1 for a, sw in results if a == RIGHT and sw == "9000")
    for value in ("63C2", "63C1", "63C0"):
        assert wrong_answers.count(value) <= 1 + rights_ok, results
    spent_after_last_reset = 3 - remaining(card_file)
    assert 0 <= spent_after_last_reset <= 3


# -- a door holds the card for its whole session ---------------------------------------------

def test_second_in_process_door_gets_card_in_use_until_the_first_closes(card_file):
    first = Card.from_file(card_file)
    try:
        with pytest.raises(CardInUse) as info:
            Card.from_file(card_file, wait=0.2)
        message = str(info.value)
        assert str(card_file) in message and "card in use" in message and "\n" not in message
        assert f"pid {os.getpid()}" in message                  # who holds it
        # The holder's saves go through its lock (the save replaces the inode; the lock file stays).
        first.power_on()
        for apdu in (SELECT_J, SELECT_PIN, WRONG):
            sw = first.transmit(bytes.fromhex(apdu))[-2:]
        assert sw.hex().upper() == "63C2" and remaining(card_file) == 2
        with pytest.raises(CardInUse):
            Card.from_file(card_file, wait=0)
    finally:
        first.close()
    with Card.from_file(card_file, wait=0) as second:       # released: the next door gets it
        assert second.image.pin("jpki", 0x0018).remaining == 2


def test_a_closed_file_card_writes_nothing(card_file):
    card = Card.from_file(card_file)
    card.close()
    card.power_on()
    for apdu in (SELECT_J, SELECT_PIN):
        card.transmit(bytes.fromhex(apdu))
    # Without its lock the card cannot make a try durable: 6581, and the file keeps its counter.
    assert card.transmit(bytes.fromhex(WRONG)).hex().upper() == "6581"
    assert remaining(card_file) == 3


def test_back_office_write_waits_then_refuses_while_a_door_holds_the_card(card_file, monkeypatch):
    monkeypatch.setattr(image_mod, "LOCK_WAIT", 0.2)
    before = card_file.read_bytes()
    other = build_persona("adult", seed=12)[0]
    with Card.from_file(card_file):
        with pytest.raises(CardInUse):
            other.save(card_file)
    assert card_file.read_bytes() == before
    other.save(card_file)                                   # free again: written
    assert CardImage.load(card_file).to_json() == other.to_json()


def test_card_create_force_on_a_card_in_a_reader_is_refused(card_file, monkeypatch):
    monkeypatch.setattr(image_mod, "LOCK_WAIT", 0.2)
    before = card_file.read_bytes()
    with Card.from_file(card_file):
        result = CliRunner().invoke(main, ["card", "create", "--persona", "adult", "-o", str(card_file), "--force"])
    assert result.exit_code == 1 and "card in use" in result.output
    assert card_file.read_bytes() == before


def test_kiosk_with_a_card_in_use_refuses_with_one_line(card_file, monkeypatch):
    from mynaemu.tools.cli import kiosk as cli_kiosk

    monkeypatch.setattr(image_mod, "LOCK_WAIT", 0.2)
    with Card.from_file(card_file):
        with pytest.raises(cli_kiosk.KioskExit) as info:
            cli_kiosk._open_card(card_file, None)
    assert info.value.exit_code == 9 and "card in use" in info.value.format_message()
    conn = cli_kiosk._open_card(card_file, None)            # and the kiosk's door holds it too
    try:
        with pytest.raises(CardInUse):
            Card.from_file(card_file, wait=0)
    finally:
        conn.close()
    Card.from_file(card_file, wait=0).close()               # released by the connection's close


def test_kiosk_enrol_on_a_card_in_a_reader_is_refused_and_writes_nothing(card_file, tmp_path, monkeypatch):
    monkeypatch.setattr(image_mod, "LOCK_WAIT", 0.2)
    before = card_file.read_bytes()
    with Card.from_file(card_file):
        result = CliRunner().invoke(main, ["kiosk", "enrol", "--card", str(card_file), "--pin", "1234",
                                           "--home", str(tmp_path / "home")])
    assert result.exit_code == 1 and "card in use" in result.output and result.output.count("\n") == 1
    assert card_file.read_bytes() == before


def test_back_office_rewrite_holds_the_card_from_read_to_write(card_file, monkeypatch):
    """`issue write-card`/`move`/`renew` read the card, work, then write it: a door must not
    spend a try in between (the write would roll the counter back). _load_card holds it."""
    import click

    from mynaemu.tools.cli import issue as cli_issue

    monkeypatch.setattr(image_mod, "LOCK_WAIT", 0.2)
    with click.Context(click.Command("write-card")) as ctx:
        with ctx.scope():
            image = cli_issue._load_card(card_file)
            with pytest.raises(CardInUse):
                Card.from_file(card_file, wait=0)
            image.pin("jpki", 0x0018).remaining = 1
            cli_issue._save_card(image, card_file)
            assert remaining(card_file) == 1
    Card.from_file(card_file, wait=0).close()               # released when the command ends


# -- card serve, and a holder killed with SIGKILL --------------------------------------------

@pytest.fixture
def closed_port():
    """A port nothing listens on (bound, never listening): `card serve` retries and holds the card."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def _wait_for_lock_holder(card_file, pid, timeout=60):
    lock = lock_path_for(card_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock.exists() and f"pid {pid}" in lock.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never took {lock}")


def test_card_serve_holds_the_card_and_a_sigkill_releases_it(card_file, closed_port):
    serve = subprocess.Popen(CLI + ["card", "serve", str(card_file), "--port", str(closed_port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_lock_holder(card_file, serve.pid)
        busy = cli("card", "apdu", card_file, SELECT_J, SELECT_PIN, WRONG)
        assert busy.returncode == 1 and busy.stdout == ""
        line, = busy.stderr.strip().splitlines()
        assert "card in use" in line and str(card_file) in line and f"pid {serve.pid}" in line
        assert "card serve" in line
        assert remaining(card_file) == 3                     # no try was spent
    finally:
        serve.send_signal(signal.SIGKILL)
        serve.wait(30)
    done = cli("card", "apdu", card_file, SELECT_J, SELECT_PIN, WRONG)
    assert done.returncode == 0 and done.stdout.split()[-1] == "63C2"
    assert remaining(card_file) == 2


def test_lock_of_a_killed_in_process_holder_is_released(card_file):
    code = ("import sys, time\nfrom mynaemu.card.core import Card\n"
            "card = Card.from_file(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(card_file)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CardInUse):
            Card.from_file(card_file, wait=0)
    finally:
        holder.kill()
        holder.wait(30)
    Card.from_file(card_file, wait=0).close()


# -- symlinks ---------------------------------------------------------------------------------

def test_symlinked_image_tries_persist_in_the_target_and_the_link_stays(card_file, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    link = other / "link.json"
    link.symlink_to(card_file)
    for expected in ("63C2", "63C1"):
        result = CliRunner().invoke(main, ["card", "apdu", str(link), SELECT_J, SELECT_PIN, WRONG])
        assert result.exit_code == 0 and result.output.split()[-1] == expected
        assert link.is_symlink() and os.readlink(link) == str(card_file)
        assert remaining(card_file) == int(expected[-1])     # the target holds the counter
    # The lock is the target's: a door on the link excludes a door on the target and back.
    assert lock_path_for(link) == lock_path_for(card_file) == card_file.parent / ".card.json.lock"
    with Card.from_file(link):
        with pytest.raises(CardInUse):
            Card.from_file(card_file, wait=0)
    assert not (other / ".link.json.lock").exists()


def test_symlink_chain_and_relative_link_reach_the_target(card_file, tmp_path):
    (tmp_path / "a.json").symlink_to("card.json")             # relative
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")     # chain
    with Card.from_file(tmp_path / "b.json") as card:
        card.power_on()
        for apdu in (SELECT_J, SELECT_PIN, WRONG):
            card.transmit(bytes.fromhex(apdu))
    assert (tmp_path / "a.json").is_symlink() and (tmp_path / "b.json").is_symlink()
    assert remaining(card_file) == 2


# -- not a card image: refused at once, naming the file -------------------------------------

def _special_files(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    folder = tmp_path / "dir.json"
    folder.mkdir()
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.truncate(image_mod.MAX_IMAGE_BYTES + 1)         # sparse: no disk used
    cases = {"a FIFO": fifo, "a directory": folder, "too large": huge}
    if os.geteuid() == 0:
        dev = tmp_path / "null.json"
        os.mknod(dev, stat.S_IFCHR | 0o600, os.makedev(1, 3))   # a /dev/null twin, in tmp
        cases["a character device"] = dev
    cases["a character device (/dev/null)"] = Path("/dev/null")
    return cases


def test_fifo_device_directory_and_huge_file_are_refused_promptly(tmp_path):
    for what, path in _special_files(tmp_path).items():
        for args in (["card", "apdu", path, SELECT_J], ["card", "info", path]):
            started = time.monotonic()
            result = cli(*args, timeout=30)                 # a hang on the FIFO would time out
            assert time.monotonic() - started < 25
            assert "Traceback" not in result.stderr
            if what == "a directory":
                # click's own check (dir_okay=False) answers first: bad argument, exit 2
                assert result.returncode == 2 and f"{path}' is a directory" in result.stderr
                continue
            assert result.returncode == 1, (what, result)
            line, = result.stderr.strip().splitlines()
            assert str(path) in line and what.split(" (")[0] in line, (what, line)
        with pytest.raises(CardImageError):
            Card.from_file(path, wait=0)
    assert not Path("/dev/.null.lock").exists()             # no lock file made for a device


def test_missing_image_is_refused_without_leaving_a_lock_file(tmp_path):
    result = CliRunner().invoke(main, ["card", "apdu", str(tmp_path / "nope.json"), SELECT_J])
    assert result.exit_code == 1 and "nope.json" in result.output and "No such file" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_planted_lock_file_that_is_not_a_file_is_refused(card_file):
    lock = lock_path_for(card_file)
    os.mkfifo(lock)
    started = time.monotonic()
    with pytest.raises(CardImageError) as info:
        Card.from_file(card_file, wait=0)
    assert time.monotonic() - started < 5 and "FIFO" in str(info.value)
    lock.unlink()
    lock.symlink_to(card_file.parent / "elsewhere.lock")     # a symlinked lock is not followed
    with pytest.raises(CardImageError):
        Card.from_file(card_file, wait=0)
    assert not (card_file.parent / "elsewhere.lock").exists()
