"""The card state machine of rules.md §10 (STATE-1, STATE-2) as ONE table: `TRANSITIONS`.

For each operation: the card states it may start from, the state it leaves the card in, what it
does to the card's certificates, and the rule ids behind it. The workflow's steps check
(`Transition.allows`) and apply (`Transition.to`, `Transition.certificates`) their transition
through this table and nowhere else; vectors/lifecycle/transitions.csv holds the same table as
data, written by hand from rules.md, and tests/issuance/lifecycle/test_transitions_matrix.py checks
the two cell by cell and drives the real workflow through every cell.

States are the card's *effective* states: a card stored as active or suspended whose expiry day
has passed counts as "expired" (廃止扱い, VAL-12). "issued" is the state between 発行 and the
交付通知書 inside one `generate` transaction; no committed card rests in it.

    applied 申請 ──receive──▶ received 受付 ──generate──▶ issued 発行済 ──(notice: 交付通知書)──▶
    awaiting_delivery 交付待ち ──deliver──▶ active 交付済/有効 ◀──resume── suspended 一時停止
    active ──suspend──▶ suspended;  active|suspended|expired ──abolish / reissue / (replaced)──▶
    abolished 廃止 ──collect──▶ collected 回収 ──destroy──▶ destroyed 廃棄
    any state before destroyed ──revoke (death, 消除, number change: M10)──▶ revoked 失効 ──collect──▶ …

A new card enters "applied" by 申請 (apply, renew's card renewal, reissue): that is not a
transition of an existing card, so it is not a row here.
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Mapping

__all__ = ["STATE_LABELS", "CARD_STATES", "PENDING_STATES", "IN_SERVICE", "LIVE_STATES", "CertEffect",
           "Transition", "TRANSITIONS", "STEPS", "illegal_state_message"]

STATE_LABELS = {
    "applied": "申請", "received": "受付", "issued": "発行済", "awaiting_delivery": "交付待ち",
    "active": "交付済/有効", "suspended": "一時停止", "abolished": "廃止", "collected": "回収",
    "destroyed": "廃棄", "revoked": "失効", "expired": "有効期限切れ (廃止扱い, VAL-12)",
    "not_yet_applied": "未申請 (as of the instant asked)",
}
# The effective card states, in the order of the life of a card (the CSV's columns).
CARD_STATES = ("applied", "received", "issued", "awaiting_delivery", "active", "suspended", "expired",
               "abolished", "collected", "destroyed", "revoked")
PENDING_STATES = ("applied", "received", "issued", "awaiting_delivery")
IN_SERVICE = ("active", "suspended")
LIVE_STATES = PENDING_STATES + IN_SERVICE


@dataclasses.dataclass(frozen=True)
class CertEffect:
    """What a transition does to each live certificate of the card (STATE-2): every certificate
    whose status is in `from_status` gets the certificate event `event` (store CERT_EVENTS).
    `reason`: the event's reason when the table fixes it; None lets the step give it (the
    revocation reason of its ground)."""

    from_status: tuple[str, ...]
    event: str
    reason: str | None = None


_HOLD = CertEffect(("good",), "hold", "certificateHold")         # STATE-3(3): every certificate held
_RELEASE = CertEffect(("hold",), "released")
_REVOKE = CertEffect(("good", "hold"), "revoked")                 # reason: the step's ground


@dataclasses.dataclass(frozen=True)
class Transition:
    """One row of the state machine.

    operation: the step (its refusals name it so); sources: the effective states it may start
    from, in the order its IllegalState message lists them; to: the state it sets (None: the
    card's state is unchanged); then: the row that follows in the same transaction (generate →
    notice); certificates: the uniform certificate effect, when the step has one (steps that
    re-issue certificates describe that in `certificates_note`); rules: the rule ids; step: False
    for a row the workflow applies inside another step (never called on its own); refusals:
    states where a rule refuses the step before the state check (state → rule id; the step
    raises Refused with that rule's reason, not IllegalState); advice: states where the
    IllegalState message says what to do instead of "<op> needs …".
    """

    operation: str
    sources: tuple[str, ...]
    to: str | None
    rules: tuple[str, ...]
    certificates: CertEffect | None = None
    certificates_note: str = ""
    then: str | None = None
    step: bool = True
    refusals: Mapping[str, str] = dataclasses.field(default_factory=dict)
    advice: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def allows(self, state: str) -> bool:
        return state in self.sources

    def outcome(self, state: str) -> str | None:
        """The state the card rests in after this step from `state` (None: not allowed)."""
        if not self.allows(state):
            return None
        row, result = self, state
        while row is not None:
            result = row.to or result
            row = TRANSITIONS[row.then] if row.then else None
        return result


def _table(*rows: Transition) -> Mapping[str, Transition]:
    return MappingProxyType({row.operation: row for row in rows})


_ENDABLE = ("active", "suspended", "expired")  # VAL-12: an expired card can still be ended

TRANSITIONS: Mapping[str, Transition] = _table(
    Transition("receive", ("applied",), "received", ("FLOW-1 step 5", "FLOW-3")),
    # 受付 (when still applied) + 鍵ペア生成 + 証明書発行 + personalisation, then the 交付通知書
    Transition("generate", ("applied", "received"), "issued", ("JPKI-4", "FLOW-1 steps 5-7", "ELIG-2"),
               certificates_note="issues the user-authentication certificate, and the signing one when "
                                 "eligible (ELIG-2, M9)", then="notice"),
    Transition("notice", ("issued",), "awaiting_delivery", ("FLOW-1 step 8",), step=False),
    Transition("deliver", ("awaiting_delivery",), "active", ("FLOW-1 step 10", "STATE-3(7)", "ELIG-3")),
    Transition("suspend", ("active",), "suspended", ("FLOW-SUSP-3", "STATE-3(3)"), certificates=_HOLD),
    Transition("resume", ("suspended",), "active", ("FLOW-SUSP-3",), certificates=_RELEASE),
    Transition("move", ("active",), None, ("MOV-1", "MOV-2", "VAL-10"),
               certificates_note="revokes the signing certificate as superseded and issues a new one "
                                 "ending with the user-authentication certificate"),
    Transition("write-card", ("active",), None, ("MOV-2",),
               certificates_note="re-keys on the card a live certificate whose key is not on it"),
    # 暗証番号の初期化 at the counter (steps_pins.py; the seeds give no procedure, rules.md §19 gaps 2, 4)
    Transition("pin-reset", ("active",), None, ("AP-3", "AP-4", "AP-5", "AP-6"),
               advice={"suspended": "release it at the counter first (FLOW-SUSP-3)"}),
    Transition("renew", ("active",), None, ("VAL-7", "STATE-3(4)", "FLOW-RENEW-1", "VAL-4"),
               certificates_note="card in its window: none (a renewal application); else certificates in "
                                 "their window: all revoked as superseded and issued anew",
               refusals={"expired": "VAL-9"},
               advice={"suspended": "release it at the counter first (FLOW-SUSP-3)"}),
    Transition("reissue", _ENDABLE, "abolished", ("FLOW-REISSUE-1", "D6", "STATE-3(8)"), certificates=_REVOKE),
    Transition("abolish", _ENDABLE, "abolished", ("FLOW-ABOL-1",), certificates=_REVOKE),
    Transition("collect", ("abolished", "revoked"), "collected", ("FLOW-ABOL-1",)),
    Transition("destroy", ("collected",), "destroyed", ("FLOW-ABOL-1",)),
    Transition("revoke", LIVE_STATES + ("expired",), "revoked", ("M10", "NUM-7"), certificates=_REVOKE),
    # STATE-3(8) / FLOW-RENEW-1 step 8: delivering a replacement ends the card it replaces
    Transition("replaced", _ENDABLE, "abolished", ("STATE-3(8)", "FLOW-RENEW-1 step 8"),
               certificates=_REVOKE, step=False),
    Transition("handed-in", ("abolished",), "collected", ("FLOW-RENEW-1 step 8",), step=False),
)

# The rows a caller can run as a workflow step (the CLI's `issue` subcommands).
STEPS = tuple(op for op, row in TRANSITIONS.items() if row.step)


def illegal_state_message(operation: str, app_id: str, state: str, expires: str | None) -> str:
    """The IllegalState text of `operation` refused on a card in `state` (it names the state)."""
    row = TRANSITIONS[operation]
    hint = ""
    if state == "expired":
        hint = f" (VAL-12: the card expired on {expires} and counts as abolished)"
    need = row.advice.get(state) or f"{operation} needs {' or '.join(row.sources)}"
    return f"{operation} refused: card {app_id} is {state} ({STATE_LABELS[state]}){hint}; {need}"
