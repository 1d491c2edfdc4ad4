"""一時停止 (suspend) and 解除 (resume) of a card and its certificates (FLOW-SUSP-3, STATE-3 item 3)."""
from __future__ import annotations

import dataclasses
import datetime as _dt

from mynaemu.issuance import validate
from mynaemu.issuance.lifecycle.inputs import audit_target, valid
from mynaemu.issuance.errors import BadInput, Refused

__all__ = ["Basic4", "suspend", "resume"]


@dataclasses.dataclass(frozen=True)
class Basic4:
    """基本4情報 as a caller gives them on the phone (FLOW-SUSP-3, DATA-1)."""

    name: str
    birth: _dt.date
    sex: str
    address: str


def suspend(wf, app_id: str, *, at: _dt.datetime, caller: Basic4 | None = None) -> list[int]:
    """一時停止 + 一時保留 by the call centre. With `caller`, the 基本4情報 the caller gives
    must match the record (FLOW-SUSP-3). Decision: without `caller` the suspension is an
    operator's own act (e.g. on a report received at the municipality) and is audited as such.
    Returns the serials put on hold."""
    if caller is not None:
        valid(validate.text, caller.name, "caller_name")
        valid(validate.text, caller.address, "caller_address")
        valid(validate.check_birth, caller.birth, "caller_birth")
        if not isinstance(caller.sex, str) or len(caller.sex) != 1:
            raise BadInput(f"caller_sex must be one JIS X 0303 digit, got {validate.shown(caller.sex)}")

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        wf._require(app_id_, card, at, "suspend")
        wf._check_clock(app_id_, at)
        if caller is not None:
            wrong = [label for label, given, have in (
                ("氏名", caller.name, person["name"]), ("生年月日", caller.birth.isoformat(), person["birth"]),
                ("性別", caller.sex, person["sex"]), ("住所", caller.address, person["address"]))
                     if given != have]
            if wrong:
                raise Refused(f"FLOW-SUSP-3: the caller's 基本4情報 do not match the record "
                              f"({', '.join(wrong)}); not suspended")
            wf._note(channel="call-centre", identity="basic4 matched")
        else:
            wf._note(channel="operator")
        held = wf._certs_follow(app_id_, "suspend", at)  # STATE-3(3): every certificate on the card
        wf._enter(app_id_, "suspend", at)
        return held

    return wf._run("suspend", audit_target(app_id), at, body)


def resume(wf, app_id: str, *, at: _dt.datetime, identity_check: str = "counter identity check",
           channel: str = "counter") -> list[int]:
    """解除 (FLOW-SUSP-3): only at the counter, after an identity check, with the 一時停止解除申請書.
    Returns the serials released."""
    if identity_check and isinstance(identity_check, str) and identity_check.strip():
        identity_check = valid(validate.text, identity_check.strip(), "identity_check")
    if not isinstance(channel, str) or len(channel) > 32:
        raise BadInput(f"channel must be a short text, got {validate.shown(channel)}")

    def body(at):
        app_id_, application, card, person = wf._load(app_id)
        if channel != "counter":
            raise Refused(f"FLOW-SUSP-3: release is done only at the counter (channel {channel!r} refused)")
        if not identity_check or not identity_check.strip():
            raise BadInput("FLOW-SUSP-3: release needs an identity check")
        wf._require(app_id_, card, at, "resume")
        wf._check_clock(app_id_, at)
        released = wf._certs_follow(app_id_, "resume", at)
        wf._enter(app_id_, "resume", at)
        wf._note(identity_check=identity_check.strip())
        return released

    return wf._run("resume", audit_target(app_id), at, body)
