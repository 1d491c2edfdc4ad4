"""Fuzzing properties of the card core (issue 5 item 2), the fast part of the suite.

The APDU grammar and the invariant oracle are those of the long mode (mynaemu.tools.harness.fuzz; its
docstring lists the invariants). Here hypothesis drives the grammar: each example starts a
fresh copy of a persona card (built once for the module) with drawn options, drawn retry
counters (some blocked) and drawn verified PINs, then sends a drawn sequence of structured
APDUs (every CLA/INS the card knows, short and extended, valid and invalid Lc/Le, across every
application), random bytes and power actions. Any Violation fails the example with the APDU
and state (PINs redacted).

The last tests feed the oracle deliberately broken cards, so the properties are known to bite.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mynaemu.card.core import Card
from mynaemu.card.image import KeyEF
from mynaemu.issuance.personas import build_persona
from mynaemu.tools.harness import fuzz

SETTINGS = settings(max_examples=120, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class DrawChooser:
    """The generator's entropy drawn from hypothesis, so failures shrink."""

    def __init__(self, data):
        self.draw = data.draw

    def pick(self, seq):
        return self.draw(st.sampled_from(seq))

    def int(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def chance(self, p):
        return self.draw(st.integers(0, 999)) >= round(1000 * (1 - p))

    def bytes(self, n):
        return self.draw(st.binary(min_size=n, max_size=n))


@pytest.fixture(scope="module")
def facts():
    """name -> CardFacts of a persona issued once for the module (fresh copies per example)."""
    return {name: fuzz.CardFacts.of(build_persona(name)[0]) for name in fuzz.PERSONAS}


def _run(facts, data, steps_max: int) -> fuzz.Oracle:
    ch = DrawChooser(data)
    name = ch.pick(fuzz.PERSONAS)
    oracle = fuzz.start_episode(ch, facts[name], name)
    try:
        fuzz.run_steps(oracle, fuzz.ApduGenerator(ch, oracle), data.draw(st.integers(1, steps_max)))
    finally:
        oracle.close()
    return oracle


@SETTINGS
@given(data=st.data())
def test_structured_apdus_keep_every_invariant(facts, data):
    _run(facts, data, 60)


@SETTINGS
@given(data=st.data(), raws=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=40))
def test_random_bytes_keep_every_invariant(facts, data, raws):
    ch = DrawChooser(data)
    name = ch.pick(fuzz.PERSONAS)
    oracle = fuzz.start_episode(ch, facts[name], name)
    try:
        for raw in raws:
            oracle.transmit(raw)
    finally:
        oracle.close()


@SETTINGS
@given(data=st.data(), header=st.tuples(st.sampled_from([0x00, 0x80, 0x0C, 0x01, 0x10, 0x40, 0xFF]),
                                        st.sampled_from([0xA4, 0xB0, 0xB2, 0x20, 0x24, 0x2A, 0x32, 0x84,
                                                         0x88, 0xCA, 0xC0, 0xA2, 0xAE, 0xFC, 0x00, 0xFE]),
                                        st.integers(0, 255), st.integers(0, 255)),
       body=st.one_of(st.just(b""), st.binary(min_size=1, max_size=3),
                      st.binary(min_size=1, max_size=260).map(lambda d: bytes((len(d) & 0xFF,)) + d),
                      st.binary(min_size=1, max_size=300).map(lambda d: b"\x00" + len(d).to_bytes(2, "big") + d),
                      st.binary(min_size=1, max_size=300).map(
                          lambda d: b"\x00" + len(d).to_bytes(2, "big") + d + b"\x00\x00")))
def test_every_header_with_any_length_form(facts, data, header, body):
    """Every CLA/INS the card knows (and some it does not) with any P1/P2 and Lc/Le form."""
    ch = DrawChooser(data)
    name = ch.pick(fuzz.PERSONAS)
    oracle = fuzz.start_episode(ch, facts[name], name)
    try:
        oracle.transmit(bytes(header) + body)
    finally:
        oracle.close()


# -- the properties bite: broken cards are caught ----------------------------------------------

def _oracle(facts, card_class, name="adult"):
    f = facts[name]
    image = f.fresh_image()
    oracle = fuzz.Oracle(f, image, card_class(image), label=f"broken {name}")
    oracle.power_on()
    return oracle


AID_H = bytes.fromhex("D3921000310001010408")


def _expect_violation(oracle, apdus, words):
    with pytest.raises(fuzz.Violation) as info:
        for apdu in apdus:
            oracle.transmit(apdu)
    oracle.close()
    report = info.value.report()
    assert words in info.value.message, report
    for _app, _fid, pin in oracle.pins:       # house rule: reports never show a PIN
        assert len(pin.value) < 4 or pin.value.hex().upper() not in report, report
    return info.value


def test_oracle_catches_61xx(facts):
    class Card61(Card):
        def transmit(self, raw):
            return b"\x61\x10"
    _expect_violation(_oracle(facts, Card61), [b"\x00\xA4\x04\x0C\x0A" + AID_H], "not allowed")


def test_oracle_catches_an_escaping_exception(facts):
    class Raising(Card):
        def transmit(self, raw):
            raise IndexError("boom")
    _expect_violation(_oracle(facts, Raising), [b"\x00\xB0\x00\x00\x00"], "raised IndexError")


def test_oracle_catches_a_caught_internal_error(facts):
    class Buggy(Card):
        def _get_challenge(self, cmd):
            raise ZeroDivisionError
        _ISO = {**Card._ISO, 0x84: _get_challenge}
    _expect_violation(_oracle(facts, Buggy), [b"\x00\x84\x00\x00\x10"], "internal error")


def test_oracle_catches_a_protected_read(facts):
    class Leaky(Card):
        def _granted(self, app, rule):
            return True
    violation = _expect_violation(_oracle(facts, Leaky), [b"\x00\xA4\x04\x0C\x0A" + AID_H, b"\x00\xB0\x81\x00\x00"],
                                  "without its credential")
    assert "kenhojo/0001" in violation.message


def test_oracle_catches_a_counter_that_rises(facts):
    class Forgiving(Card):
        def _get_challenge(self, cmd):
            for app in self.image.applications:          # "refreshes" every live counter
                for ef in app.efs.values():
                    if hasattr(ef, "max_tries") and ef.remaining:
                        ef.remaining = ef.max_tries
            return Card._get_challenge(self, cmd)
        _ISO = {**Card._ISO, 0x84: _get_challenge}
    wrong = b"\x00\x20\x00\x91\x040000"
    _expect_violation(_oracle(facts, Forgiving), [b"\x00\xA4\x04\x0C\x0A" + AID_H, wrong, b"\x00\x84\x00\x00\x08"],
                      "rose 2 -> 3 without a correct PIN")


def test_oracle_catches_a_free_try(facts):
    class FreeTry(Card):
        def _commit(self):
            pass
        def _verify(self, cmd):
            pin = self._pin_for(cmd.p2)
            remaining = pin.remaining
            resp = Card._verify(self, cmd)
            pin.remaining = remaining          # the failure is forgotten
            return resp
        _ISO = {**Card._ISO, 0x20: _verify}
    _expect_violation(_oracle(facts, FreeTry), [b"\x00\xA4\x04\x0C\x0A" + AID_H, b"\x00\x20\x00\x91\x040000"],
                      "wrong PIN")


def test_oracle_catches_private_key_bytes(facts):
    class KeyLeak(Card):
        def _get_challenge(self, cmd):
            app = self.image.application("kenhojo")
            key = next(ef for ef in app.efs.values() if isinstance(ef, KeyEF))
            prime = fuzz.private_material(key.key_pem)[3]
            return prime[:cmd.le] + b"\x90\x00"
        _ISO = {**Card._ISO, 0x84: _get_challenge}
    _expect_violation(_oracle(facts, KeyLeak), [b"\x00\x84\x00\x00\x40"], "private key material")


def test_oracle_catches_a_foreign_aid_accepted(facts):
    class Greedy(Card):
        def _find_df(self, name):
            return self.image.applications[0]
    _expect_violation(_oracle(facts, Greedy), [b"\x00\xA4\x04\x0C\x06\xD2\x76\x00\x01\x24\x01"], "names no DF")


def test_oracle_catches_status_kept_across_applications(facts):
    class Sticky(Card):
        def _enter(self, app):
            self.current_app, self.current_ef, self.security_app = app, None, app
    verify = b"\x00\x20\x00\x91\x041234"
    aid_j = bytes.fromhex("D392F000260100000001")
    _expect_violation(_oracle(facts, Sticky),
                      [b"\x00\xA4\x04\x0C\x0A" + AID_H, verify, b"\x00\xA4\x04\x0C\x0A" + aid_j,
                       b"\x00\xA4\x04\x0C\x0A" + AID_H, b"\x00\xB0\x81\x00\x00"],
                      "verified status never granted")


def test_reports_hide_pins_sent_with_any_cla():
    pin = b"1234"
    for cla in (0x00, 0x0C, 0x10, 0x84):
        text = fuzz.redact_apdu(bytes((cla, 0x20, 0x00, 0x91, 0x04)) + pin)
        assert "31323334" not in text and text.endswith("********")
    assert fuzz.redact_apdu(b"\x00\xB0\x00\x00\x04" + pin, [pin]) == "00B0000004********"


def test_long_mode_smoke(facts):
    """A few thousand APDUs through the long mode's own loop, statistics included."""
    import random

    ch = fuzz.RandomChooser(random.Random(5))
    rigs = {name: fuzz.Rig(f) for name, f in facts.items()}
    sent = 0
    sws = set()
    for episode in range(20):
        name = ch.pick(fuzz.PERSONAS)
        oracle = fuzz.start_episode(ch, facts[name], name, rigs[name])
        try:
            fuzz.run_steps(oracle, fuzz.ApduGenerator(ch, oracle), 150)
        finally:
            oracle.close()
        sent += oracle.sent
        sws.update(oracle.sw_counts)
    assert sent >= 3000
    # The grammar reaches success, PIN failures, blocking and the access errors.
    assert {0x9000, 0x6982, 0x6984, 0x6A82, 0x6700, 0x63C0} <= sws
