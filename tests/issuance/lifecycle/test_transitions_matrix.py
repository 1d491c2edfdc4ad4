"""The card state machine as data: vectors/lifecycle/transitions.csv against the code, cell by cell.

The CSV is written by hand from rules.md (§9 FLOW-*, §10 STATE-1..3, VAL-12), not generated from
the code. Two checks per cell (operation × effective card state):

 - the table: transitions.TRANSITIONS says the same (allowed or not, the state the card rests in,
   the rule that refuses first), and each row's certificate effect and rule ids match;
 - the workflow: the real step runs on a copy of a store holding a card in that state. Allowed:
   the step succeeds and leaves the card in the CSV's state. Not allowed: IllegalState with the
   message the workflow has always given (it names the state and what the step needs), or the
   rule's Refused, and the store is unchanged.

Model: vectors/access/*.csv + tests/card/test_access_matrix.py.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import itertools
import shutil

import pytest

from mynaemu.card.image import CardImage
from mynaemu.issuance.lifecycle.transitions import CARD_STATES, STEPS, TRANSITIONS
from mynaemu.issuance.lifecycle.workflow import IllegalState, Refused, Workflow
from mynaemu.issuance.store import Store, iso
from tests.issuance.lifecycle.test_workflow import (  # noqa: F401  (key_pool, long_pki: fixtures)
    HANAKO, PINS, domain_dump, jst, key_pool, long_pki,
)
from tests.support import REPO

CSV_PATH = REPO / "vectors" / "lifecycle" / "transitions.csv"

# The labels the refusals show for each state (STATE-1's names), as the workflow has always
# written them.
LABELS = {
    "applied": "申請", "received": "受付", "issued": "発行済", "awaiting_delivery": "交付待ち",
    "active": "交付済/有効", "suspended": "一時停止", "abolished": "廃止", "collected": "回収",
    "destroyed": "廃棄", "revoked": "失効", "expired": "有効期限切れ (廃止扱い, VAL-12)",
}

AT = jst(2020, 11, 1, 10)             # after every card's history; the auth certificates' renewal window
AT_EXPIRED = jst(2026, 1, 16, 0, 0, 1)  # the day after the cards' expiry (2026-01-15, D5)


@dataclasses.dataclass(frozen=True)
class Row:
    operation: str
    kind: str
    cells: dict          # state -> cell text
    certificates: str
    rules: tuple
    line: int


def _load_rows() -> list[Row]:
    with open(CSV_PATH, encoding="utf-8", newline="") as fh:
        lines = [(n, text) for n, text in enumerate(fh, 1) if not text.startswith("#")]
    reader = csv.DictReader(text for _, text in lines)
    assert tuple(reader.fieldnames[2:-2]) == CARD_STATES, "the CSV's state columns are the card states"
    rows = []
    for (n, _), rec in zip(lines[1:], reader):
        rows.append(Row(rec["operation"], rec["kind"], {s: rec[s] for s in CARD_STATES}, rec["certificates"],
                        tuple(r for r in rec["rules"].split(";") if r), n))
    return rows


ROWS = _load_rows()
BY_OP = {row.operation: row for row in ROWS}
CELLS = [(row.operation, state) for row in ROWS for state in CARD_STATES]
STEP_CELLS = [(op, state) for op, state in CELLS if BY_OP[op].kind == "step"]


def test_the_csv_and_the_table_have_the_same_rows():
    assert [row.operation for row in ROWS] == list(TRANSITIONS)
    assert [row.operation for row in ROWS if row.kind == "step"] == list(STEPS)
    assert {row.kind for row in ROWS} == {"step", "within"}
    assert len(CELLS) == len(TRANSITIONS) * len(CARD_STATES) == 187


@pytest.mark.parametrize("operation", list(BY_OP))
def test_row_certificates_and_rules(operation):
    row, transition = BY_OP[operation], TRANSITIONS[operation]
    effect = transition.certificates
    shown = f"{'|'.join(effect.from_status)}>{effect.event}" if effect else ""
    assert shown == row.certificates, f"transitions.csv:{row.line}"
    assert transition.rules == row.rules, f"transitions.csv:{row.line}"
    assert transition.step == (row.kind == "step")


@pytest.mark.parametrize("operation,state", CELLS)
def test_table_cell(operation, state):
    cell, transition = BY_OP[operation].cells[state], TRANSITIONS[operation]
    where = f"transitions.csv:{BY_OP[operation].line} {operation} × {state}"
    if cell == "-":
        assert not transition.allows(state) and state not in transition.refusals, where
        assert transition.outcome(state) is None, where
    elif cell.startswith("refused "):
        assert not transition.allows(state), where
        assert transition.refusals.get(state) == cell.split(" ", 1)[1], where
    else:
        assert cell in CARD_STATES, where
        assert transition.allows(state), where
        assert transition.outcome(state) == cell, where


# ---------------------------------------------------------------------------------------------
# the real workflow through every cell of every step
# ---------------------------------------------------------------------------------------------

_NAMES = iter(f"状態\u3000{c}" for c in "一二三四五六七八九十百千万")


@pytest.fixture(scope="module")
def estate(tmp_path_factory, long_pki, key_pool):
    """A store holding one card (of its own holder) resting in each state, closed so that each
    cell runs on a copy. Returns (home, {state: app_id}, the active card's image)."""
    home = tmp_path_factory.mktemp("estate")
    cards = {}
    cycle = itertools.cycle(key_pool)
    with Store.open(home) as store:
        wf = Workflow(store, pki=long_pki, operator="op-17", terminal="counter-3", key_factory=lambda: next(cycle))

        def new(state):
            app_id = wf.apply(at=jst(2016, 5, 1, 9), **{**HANAKO, "name": next(_NAMES)})
            cards[state] = app_id
            return app_id

        wf.receive(new("received"), at=jst(2016, 5, 10))
        new("applied")
        wf.generate(new("awaiting_delivery"), at=jst(2016, 5, 20))
        issued = new("issued")
        wf.generate(issued, at=jst(2016, 5, 20))
        # "issued" never outlives a generate transaction: put one card there by hand
        with store.transaction():
            store.set_card_state(issued, "issued", at=jst(2016, 5, 21), operation="test: held at 発行済",
                                 audit_id=None)
        images = {}
        for state in ("active", "suspended", "expired", "abolished", "collected", "destroyed", "revoked"):
            app_id = new(state)
            wf.generate(app_id, at=jst(2016, 5, 20))
            images[state] = wf.deliver(app_id, at=jst(2016, 6, 1), pins=PINS, identity_check="運転免許証")
        wf.suspend(cards["suspended"], at=jst(2017, 1, 10))
        for state in ("abolished", "collected", "destroyed"):
            wf.abolish(cards[state], at=jst(2017, 1, 10))
        for state in ("collected", "destroyed"):
            wf.collect(cards[state], at=jst(2017, 1, 11))
        wf.destroy(cards["destroyed"], at=jst(2017, 1, 12))
        wf.revoke(cards["revoked"], at=jst(2017, 1, 10), reason="number-change")
        for state, app_id in cards.items():
            expect = "active" if state == "expired" else state  # stored active; effective expired later
            assert store.card(app_id)["state"] == expect
        active_image = images["active"].to_json()
    return home, cards, active_image


def _call(wf, operation, app_id, at, active_image):
    """Run `operation` with arguments every step accepts apart from the card's state."""
    calls = {
        "receive": lambda: wf.receive(app_id, at=at),
        "generate": lambda: wf.generate(app_id, at=at),
        "deliver": lambda: wf.deliver(app_id, at=at, pins=PINS, identity_check="運転免許証"),
        "suspend": lambda: wf.suspend(app_id, at=at),
        "resume": lambda: wf.resume(app_id, at=at),
        "move": lambda: wf.move(app_id, at=at, address="東京都清瀬市新町２丁目３番"),
        "write-card": lambda: wf.write_card(app_id, at=at, card_image=CardImage.from_json(active_image)),
        "pin-reset": lambda: wf.pin_reset(app_id, at=at, card_image=CardImage.from_json(active_image), pin="auth",
                                          new_pin="4321"),
        "renew": lambda: wf.renew(app_id, at=at),
        "reissue": lambda: wf.reissue(app_id, at=at, reason="lost"),
        "abolish": lambda: wf.abolish(app_id, at=at),
        "collect": lambda: wf.collect(app_id, at=at),
        "destroy": lambda: wf.destroy(app_id, at=at),
        "revoke": lambda: wf.revoke(app_id, at=at, reason="number-change"),
    }
    assert set(calls) == set(STEPS)
    return calls[operation]()


def _illegal_message(operation, app_id, state):
    """The IllegalState text, built from the CSV row: the allowed states in column order."""
    if (operation, state) in (("renew", "suspended"), ("pin-reset", "suspended")):
        return (f"{operation} refused: card {app_id} is suspended (一時停止); "
                "release it at the counter first (FLOW-SUSP-3)")
    allowed = [s for s in CARD_STATES if BY_OP[operation].cells[s] not in ("-",)
               and not BY_OP[operation].cells[s].startswith("refused ")]
    hint = " (VAL-12: the card expired on 2026-01-15 and counts as abolished)" if state == "expired" else ""
    return (f"{operation} refused: card {app_id} is {state} ({LABELS[state]}){hint}; "
            f"{operation} needs {' or '.join(allowed)}")


@pytest.mark.parametrize("operation,state", STEP_CELLS)
def test_workflow_cell(operation, state, estate, long_pki, key_pool, tmp_path):
    home, cards, active_image = estate
    app_id = cards["active" if state == "expired" else state]
    at = AT_EXPIRED if state == "expired" else AT
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    cell = BY_OP[operation].cells[state]
    cycle = itertools.cycle(key_pool)
    with Store.open(copy) as store:
        wf = Workflow(store, pki=long_pki, operator="op-17", terminal="counter-3", key_factory=lambda: next(cycle))
        assert wf.status(app_id, at=at)["state"] == state
        before = domain_dump(store)
        if cell == "-":
            with pytest.raises(IllegalState) as caught:
                _call(wf, operation, app_id, at, active_image)
            assert str(caught.value) == _illegal_message(operation, app_id, state)
            assert domain_dump(store) == before
        elif cell.startswith("refused "):
            rule = cell.split(" ", 1)[1]
            with pytest.raises(Refused) as caught:
                _call(wf, operation, app_id, at, active_image)
            assert not isinstance(caught.value, IllegalState)
            assert str(caught.value).startswith(f"{rule}: "), str(caught.value)
            assert domain_dump(store) == before
        else:
            events = len(store.card_events(app_id))
            _call(wf, operation, app_id, at, active_image)
            assert store.card(app_id)["state"] == cell
            assert wf.status(app_id, at=at + dt.timedelta(seconds=1))["state"] == cell
            after = store.card_events(app_id)
            if cell == state:  # the card stays where it was: no state event
                assert len(after) == events
            else:
                assert after[-1]["to_state"] == cell and after[-1]["at"] == iso(at)
