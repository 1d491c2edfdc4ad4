"""No form id holds 12 digits in a row: the audit masks such a run as a 個人番号 (values.scrub),
target included, so a card with such an id would lose its audit records (`issue audit ID`)."""
from __future__ import annotations

import random

from mynaemu.issuance.store import check_form_id, make_form_id
from mynaemu.issuance.store.values import scrub


class _DigitsFirst:
    """An rng whose first 15 picks are digits (an id body of 15 digits), then random symbols."""

    def __init__(self):
        self.calls = 0
        self.rng = random.Random(5)

    def choice(self, alphabet):
        self.calls += 1
        return "7" if self.calls <= 15 else self.rng.choice(alphabet)


def test_an_id_with_a_twelve_digit_run_is_drawn_again():
    rng = _DigitsFirst()
    form_id = make_form_id(rng)
    assert rng.calls == 30                                  # the all-digit body was thrown away
    assert check_form_id(form_id) == form_id and scrub(form_id) == form_id
