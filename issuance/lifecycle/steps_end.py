"""廃止 (abolish), 回収 (collect), 廃棄 (destroy) and 失効 (revoke): a card leaves service (FLOW-ABOL-1, M10)."""
from __future__ import annotations

import datetime as _dt

from mynaemu.issuance import validate
from mynaemu.issuance.lifecycle.inputs import audit_target, hex_serial
from mynaemu.issuance.lifecycle.transitions import TRANSITIONS
from mynaemu.issuance.errors import BadInput

__all__ = ["REVOKE_REASONS", "ABOLISH_REASONS", "abolish", "collect", "destroy", "revoke"]

# Revocation reasons (RFC 5280 names) per ground. Decision: the seeds give no mapping.
REVOKE_REASONS = {  # M10 失効 grounds
    "death": "cessationOfOperation",
    "removed": "affiliationChanged",       # 住民票の消除 (moving abroad etc.)
    "number-change": "superseded",        # NUM-7: the card shows the old number
}
ABOLISH_REASONS = {"holder-request": "cessationOfOperation", "other": "cessationOfOperation"}


def abolish(wf, app_id: str, *, at: _dt.datetime, reason: str = "holder-request") -> None:
    """廃止 (FLOW-ABOL-1): the card leaves service; its certificates are revoked."""
    if reason not in ABOLISH_REASONS:
        raise BadInput(f"abolish reason must be one of {', '.join(ABOLISH_REASONS)}, got {validate.shown(reason)}")

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "abolish")
        wf._check_clock(app_id_, at)
        wf._certs_follow(app_id_, "abolish", at, ABOLISH_REASONS[reason])
        wf._retire_keys(app_id_)
        wf._enter(app_id_, "abolish", at)

    return wf._run("abolish", audit_target(app_id), at, body, reason=reason)


def collect(wf, app_id: str, *, at: _dt.datetime) -> None:
    """回収 (FLOW-ABOL-1): the abolished or revoked card is handed in."""
    def body(at):
        app_id_, _, card, _ = wf._load(app_id)
        wf._require(app_id_, card, at, "collect")
        wf._check_clock(app_id_, at)
        wf._enter(app_id_, "collect", at)
    return wf._run("collect", audit_target(app_id), at, body)


def destroy(wf, app_id: str, *, at: _dt.datetime) -> None:
    """廃棄 (FLOW-ABOL-1): the collected card is destroyed."""
    def body(at):
        app_id_, _, card, _ = wf._load(app_id)
        wf._require(app_id_, card, at, "destroy")
        wf._check_clock(app_id_, at)
        wf._enter(app_id_, "destroy", at)
    return wf._run("destroy", audit_target(app_id), at, body)


def revoke(wf, app_id: str, *, at: _dt.datetime, reason: str) -> dict:
    """失効 of the card and its certificates (M10): death, removal of the resident record
    (消除), or a change of 個人番号 (NUM-7: a new number is designated, history kept).
    Death and removal end every live card and pending application of the person."""
    if reason not in REVOKE_REASONS:
        raise BadInput(f"revoke reason must be one of {', '.join(REVOKE_REASONS)}, got {validate.shown(reason)}")

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "revoke")
        wf._check_clock(app_id_, at)
        targets = [app_id_]
        if reason in ("death", "removed"):
            # every other live card of the person: a stored live state is a live or expired
            # effective state, the sources of the same transition
            targets += [c["application_id"] for c in wf.store.cards_of_person(person["id"])
                        if c["application_id"] != app_id_ and TRANSITIONS["revoke"].allows(wf._effective_state(c, at))]
        revoked = []
        for target in targets:
            revoked += wf._certs_follow(target, "revoke", at, REVOKE_REASONS[reason])
            wf._retire_keys(target)
            wf._enter(target, "revoke", at, f"revoke ({reason})")
        if reason == "death":
            wf.store.change_person(person["id"], at=at, field="resident_status", value="deceased",
                                   reason="death", audit_id=wf._audit_id)
        elif reason == "removed":
            wf.store.change_person(person["id"], at=at, field="resident_status", value="removed",
                                   reason="消除", audit_id=wf._audit_id)
        else:
            wf.store.assign_individual_number(person["id"], at=at, reason="NUM-7 change")
        wf._note(cards=targets, revoked=[hex_serial(s) for s in revoked])
        return {"revoked_cards": targets, "revoked_serials": revoked}

    return wf._run("revoke", audit_target(app_id), at, body, reason=reason)
