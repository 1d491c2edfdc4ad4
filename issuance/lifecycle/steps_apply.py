"""申請 (apply) and 受付 (receive): a returned form becomes an application and its card (FLOW-1, FLOW-3)."""
from __future__ import annotations

import datetime as _dt

from mynaemu.issuance import policy, validate
from mynaemu.issuance.lifecycle.inputs import audit_target, aware, valid, valid_address, valid_text
from mynaemu.issuance.lifecycle.transitions import LIVE_STATES, STATE_LABELS
from mynaemu.issuance.errors import BadInput, Refused

__all__ = ["apply", "new_application", "enter_received", "receive"]


def apply(wf, *, name: str, birth: _dt.date, sex: str, address: str, at: _dt.datetime,
          guardianship: bool = False, decline_sign: bool = False, name_kana: str = "",
          name_alt: str | None = None, address_alt: str | None = None, alt_confirmed: bool = True,
          municipality_code: str = "13221", prefecture_romaji: str = "Tokyo-to",
          city_romaji: str = "Kiyose-shi") -> str:
    """申請 (FLOW-3): register a returned form; a new person is numbered (NUM-2, NUM-5).

    The applicant has checked the 代替文字 on the pre-printed form (ACT-5); alt_confirmed=False
    records a form returned without that check, which 受付 then refuses.
    """
    at_ = aware(at)
    name, address = valid_text(name, "name"), valid_address(address)
    name_kana = valid(validate.optional_text, name_kana, "name_kana")
    for what, value in (("prefecture_romaji", prefecture_romaji), ("city_romaji", city_romaji)):
        valid(validate.ascii_token, value, what, limit=validate.LIMITS["romaji"])
    if not (isinstance(municipality_code, str) and len(municipality_code) == 5 and municipality_code.isascii()
            and municipality_code.isdigit()):
        raise BadInput(f"municipality_code must be 5 ASCII digits, got {validate.shown(municipality_code)}")
    if sex not in ("1", "2", "9"):
        raise BadInput(f"sex must be 1, 2 or 9 (JIS X 0303), got {validate.shown(sex)}")
    if not isinstance(birth, _dt.date) or isinstance(birth, _dt.datetime):
        raise BadInput("birth must be a date")
    today = policy.jst_date(at_)
    if birth > today:
        raise BadInput(f"birth date {birth.isoformat()} is after the application date {today.isoformat()}")
    valid(validate.check_birth, birth, on=today)  # 明治 onwards, at most 130 years old
    for what, flags, text in (("name_alt", name_alt, name), ("address_alt", address_alt, address)):
        if flags is not None and (len(flags) != len(text) or set(flags) - {"0", "1"}):
            raise BadInput(f"{what} must be one 0/1 flag per character ({len(text)} flags)")

    def body(at):
        # concurrent 申請 of one person must not create two persons or two live cards
        wf.store.lock_name(f"basic4 {name}|{birth.isoformat()}|{sex}|{address}")
        person = wf.store.find_person_by_basic4(name, birth, sex, address)
        if person is not None:
            wf.store.lock_person(person["id"])
            wf._resident(person)
            for other in wf.store.cards_of_person(person["id"]):
                state = wf._effective_state(other, at)
                if state in LIVE_STATES:
                    raise Refused(f"STATE-3(8): this person already has card {other['application_id']} "
                                  f"({state} {STATE_LABELS[state]}); use renew or reissue")
            person_id = person["id"]
            if bool(person["guardianship"]) != guardianship:
                wf.store.change_person(person_id, at=at, field="guardianship", value=int(guardianship),
                                       reason="application", audit_id=wf._audit_id)
            wf._note(person="existing")
        else:
            person_id = wf.store.insert_person(
                juminhyo_code=wf.store.new_juminhyo_code(), name=name, name_kana=name_kana,
                birth=birth, sex=sex, address=address, name_alt=name_alt, address_alt=address_alt,
                guardianship=guardianship, municipality_code=municipality_code,
                prefecture_romaji=prefecture_romaji, city_romaji=city_romaji, at=at)
            wf.store.assign_individual_number(person_id, at=at, reason=None)  # NUM-5
            wf._note(person="new")
        return new_application(wf, person_id, at, kind="first", replaces=None,
                               decline_sign=decline_sign, alt_confirmed=alt_confirmed)

    return wf._run("apply", None, at_, body)


def new_application(wf, person_id: int, at: _dt.datetime, *, kind: str, replaces: str | None,
                    decline_sign: bool, alt_confirmed: bool) -> str:
    app_id = wf.store.new_form_id("application")
    wf.store.insert_application(app_id, person_id, kind=kind, replaces=replaces, decline_sign=decline_sign,
                                alt_confirmed=alt_confirmed, at=at, audit_id=wf._audit_id)
    wf.store.set_audit_target(wf._audit_id, app_id)
    wf._note(kind=kind, replaces=replaces, decline_sign=decline_sign)
    return app_id


def enter_received(wf, app_id: str, application, at: _dt.datetime) -> None:
    if not application["alt_confirmed"]:
        raise Refused("FLOW-3: the applicant has not confirmed the 代替文字 to be used in the certificates")
    wf.store.set_received(app_id, at)
    wf._enter(app_id, "receive", at)


def receive(wf, app_id: str, *, at: _dt.datetime) -> None:
    """受付 (FLOW-1 step 5: 交付申請内容登録)."""
    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "receive")
        wf._check_clock(app_id_, at)
        wf._resident(person)
        enter_received(wf, app_id_, application, at)
    return wf._run("receive", audit_target(app_id), at, body)
