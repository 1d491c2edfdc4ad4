"""Tearing through the real door: kill -9 `mynaemu card serve` during VERIFY and CHANGE (issue 5).

The harness is mynaemu.tools.harness.tearing (its docstring has the rules). Here: ~20 trials through
pcscd + vpcd + pyscard against `card serve` subprocesses (the long mode runs 500), a shorter
run through the child-process door, and checks that the harness's file comparison does catch
a rolled-back counter, a stray PIN value and a torn image, so a pass means something.
"""
from __future__ import annotations

import random

import pytest

from mynaemu.card.image import CardImage
from mynaemu.issuance.personas import build_persona
from mynaemu.tools.harness import tearing

PIN_OPS = ("wrong", "correct", "change")


@pytest.mark.pcsc
def test_kill9_card_serve_through_pcscd(pcscd):  # noqa: F811
    stats = tearing.run(20, door_name="pcsc", seed=20)
    assert stats.trials == 20
    # Most kills land in the middle of a PIN operation (the card is busy writing the file then).
    assert sum(stats.inflight[k] for k in PIN_OPS) >= 8, stats.format()


def test_kill9_child_card_during_verify_and_change():
    stats = tearing.run(15, door_name="child", seed=7)
    assert stats.trials == 15
    assert sum(stats.inflight[k] for k in PIN_OPS) >= 6, stats.format()


@pytest.fixture
def card_file(tmp_path):
    path = tmp_path / "card.json"
    build_persona("adult")[0].save(path)
    return path


def _pin(pins, app, fid):
    return next(p for p in pins if p.app == app and p.fid == fid)


def test_check_file_catches_a_rolled_back_counter(card_file):
    pins = tearing.tracked_pins(CardImage.load(card_file))
    pin = _pin(pins, "jpki", 0x18)
    pin.remaining = 1                      # the card had acknowledged two failures
    with pytest.raises(tearing.TearingViolation, match="jpki/0018 after the kill"):
        tearing.check_file(card_file, pins, None, tearing.Stats())


def test_check_file_allows_only_old_or_new_after_a_change(card_file):
    pins = tearing.tracked_pins(CardImage.load(card_file))
    pin = _pin(pins, "kenhojo", 0x11)
    image = CardImage.load(card_file)
    image.pin("kenhojo", 0x11).value = b"9999"
    image.save(card_file)
    change = tearing.Op("change", pin, b"", new=b"9999")
    stats = tearing.Stats()
    tearing.check_file(card_file, pins, change, stats)          # the new value: allowed
    assert stats.outcomes["change: new value written"] == 1
    stray = tearing.Op("change", pin, b"", new=b"5555")
    with pytest.raises(tearing.TearingViolation, match="value unknown"):
        pin.value = b"1234"
        tearing.check_file(card_file, pins, stray, tearing.Stats())


def test_check_file_catches_a_torn_image(card_file):
    pins = tearing.tracked_pins(CardImage.load(card_file))
    raw = card_file.read_bytes()
    card_file.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(tearing.TearingViolation, match="does not load"):
        tearing.check_file(card_file, pins, None, tearing.Stats())


def test_unique_atr_is_a_valid_t1_atr():
    atr = tearing.unique_atr(random.Random(1))
    assert atr[0] == 0x3B and atr[1] & 0x0F == 8 and atr[4] & 0x0F == 1   # 8 historical bytes, T=1
    tck = 0
    for b in atr[1:]:
        tck ^= b
    assert tck == 0                                                       # TCK checks out
    CardImage.from_json(dict(build_persona("under15")[0].to_json(), atr=atr.hex()))
