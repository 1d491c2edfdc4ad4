"""本人確認情報の検索: find a resident by their 基本4情報 at the counter (SEC-15), audited (SEC-8).

At least two of name, birth date and address must be given (SEC-15: a search on one item would
let staff browse residents); the sex may narrow a search but does not count as an item. Matches
are exact (the counter types what the applicant's document says). The answer never holds a
個人番号 (SEC-1: the number has its own right and its own command, `status --reveal`); it names
each match's cards so the counter can go on with the right one. Every search is an audit record
naming who searched, with which items (not their values) and how many residents matched.
"""
from __future__ import annotations

import datetime as _dt

from mynaemu.issuance.errors import BadInput
from mynaemu.issuance.lifecycle.inputs import aware

ITEMS = ("name", "birth", "address")


def search(wf, *, at: _dt.datetime, name: str | None = None, birth: _dt.date | None = None,
           address: str | None = None, sex: str | None = None) -> list[dict]:
    """The residents matching every item given, each with their cards (no 個人番号)."""
    at = aware(at)
    used = [item for item, value in zip(ITEMS, (name, birth, address)) if value is not None]
    if len(used) < 2:
        raise BadInput(f"a search needs at least two of --name, --birth, --address (SEC-15); got "
                       f"{', '.join('--' + u for u in used) or 'none'}")
    rows = wf.store.search_persons(name=name, birth=birth, address=address, sex=sex)
    found = []
    for person in rows:
        cards = [{"id": card["application_id"], "state": card["state"], "serial": card["serial"],
                  "expires": card["expires"]} for card in wf.store.cards_of_person(person["id"])]
        found.append({"name": person["name"], "birth": person["birth"], "sex": person["sex"],
                      "address": person["address"], "resident_status": person["resident_status"],
                      "cards": cards})
    wf.store.audit(at=at, operator=wf.operator, terminal=wf.terminal, operation="search", target=None,
                   outcome="ok", detail={"items": used + (["sex"] if sex is not None else []),
                                         "matches": len(found)})
    return found
