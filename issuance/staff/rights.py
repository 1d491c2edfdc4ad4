"""Who may do what: the roles, the rights, and the table of operations (SEC-6).

SEC-6 asks for a table mapping rights to duties that the security officer keeps and checks
before granting. This is that table; ``mynaemu issue staff rights`` prints it, and
vectors/staff/rights.csv is the same table written out by hand, tested cell by cell against
the CLI (tests/issuance/staff/test_rights_table.py).

A right is one of the five roles or ``number``:

- ``officer``  セキュリティ責任者: staff accounts and rights, the audit trail (SEC-6, SEC-7, SEC-8)
- ``counter``  窓口: the counter's errands on a resident's card
- ``issuer``   発行: key generation, certificates, card writing, CRLs
- ``callcentre`` コールセンター: 一時停止 on the phone (with the caller's 基本4情報 check)
- ``viewer``   status only
- ``number``   the 個人番号 in full (``status --reveal``), granted on its own (SEC-1): it adds to a
  role, it is never part of one.

A cell is ``yes`` (the role may run the operation), ``-`` (it may not), or ``number`` (the role
may, if the account also holds the ``number`` right). An account holding several roles may run
what any of them may. Every role may run ``status`` and ``staff passwd`` (one's own password),
and read the table (``staff rights``). Decisions outside the issue's list, written down here:
``revoke`` (失効 on death, 消除 or a change of number, M10: the resident-record events the counter
handles) is the counter's; ``persona`` (a TEST persona made end to end by the workflow) needs the
issuer, who makes cards. ``kiosk-history`` (the kiosk's issuance history, CVS-18 item 3) is the
officer's and the counter's: the municipal staff who answer for the documents issued. ``init`` needs no account (it makes the first one, on a store without
staff); ``ocsp-serve`` is a service and runs under its service identity, not a staff password.
"""
from __future__ import annotations

import dataclasses

__all__ = ["ROLES", "RIGHTS", "NUMBER", "TABLE", "SERVICE_OPERATIONS", "UNAUTHENTICATED", "Decision",
           "decide", "table_rows", "is_operation", "operation_for", "roles_for"]

ROLES = ("officer", "counter", "issuer", "callcentre", "viewer")
NUMBER = "number"
RIGHTS = ROLES + (NUMBER,)

ROLE_LABELS = {"officer": "セキュリティ責任者", "counter": "窓口", "issuer": "発行",
               "callcentre": "コールセンター", "viewer": "閲覧"}

_ALL = "officer counter issuer callcentre viewer"
# operation -> (roles allowed, with the number right too?)
_SPEC = {
    # the counter (窓口)
    "apply": "counter", "receive": "counter", "deliver": "counter", "resume": "counter", "move": "counter",
    "renew": "counter", "reissue": "counter", "abolish": "counter", "collect": "counter",
    "destroy": "counter", "revoke": "counter", "pin-reset": "counter", "search": "counter",
    # the kiosk's issuance history (CVS-18 item 3): the staff who answer for issued documents
    "kiosk-history": "officer counter",
    # the issuer (発行)
    "generate": "issuer", "write-card": "issuer", "crl": "issuer", "persona": "issuer",
    # the call centre
    "suspend": "callcentre",
    # everyone
    "status": _ALL,
    "staff passwd": _ALL,
    "staff rights": _ALL,
    # the security officer
    "audit": "officer", "audit-purge": "officer", "staff add": "officer", "staff grant": "officer", "staff revoke": "officer",
    "staff list": "officer",
}
# operations that also need the number right (SEC-1): the 個人番号 in full
_WITH_NUMBER = {"status --reveal": _ALL}

TABLE: dict[str, dict[str, str]] = {}
for _op, _roles in _SPEC.items():
    TABLE[_op] = {role: ("yes" if role in _roles.split() else "-") for role in ROLES}
for _op, _roles in _WITH_NUMBER.items():
    TABLE[_op] = {role: (NUMBER if role in _roles.split() else "-") for role in ROLES}

# `issue` commands that run under a service identity, not a member of staff.
SERVICE_OPERATIONS = {"ocsp-serve": "service:ocsp"}
# The kiosk's services write the trail under their own identities too, with no command of their
# own: the centre as ``service:centre`` (its refusals), each municipality's 証明発行サーバ as
# ``service:municipality:<code>`` (the documents it issued); issuance/store/service_records.py.
# `issue` commands that need no account at all.
UNAUTHENTICATED = frozenset({"init"})


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    missing: str | None = None     # "role" or "number" when refused


def is_operation(operation: str) -> bool:
    return operation in TABLE


def decide(operation: str, held: frozenset[str] | set[str]) -> Decision:
    """May an account holding the rights `held` (roles and perhaps ``number``) run `operation`?"""
    try:
        row = TABLE[operation]
    except KeyError:
        raise ValueError(f"no such operation in the rights table: {operation!r}") from None
    cells = {row[role] for role in held if role in row}
    if "yes" in cells:
        return Decision(True)
    if NUMBER in cells:
        return Decision(True) if NUMBER in held else Decision(False, NUMBER)
    return Decision(False, "role")


def operation_for(command: str, *, reveal: bool = False) -> str:
    """The table row of a command: ``status`` with --reveal is the row ``status --reveal``."""
    return f"{command} --reveal" if reveal else command


def roles_for(operation: str) -> list[str]:
    return [role for role, cell in TABLE[operation].items() if cell != "-"]


def table_rows() -> list[dict[str, str]]:
    """The table as rows {operation, <role>: cell …}, in a stable order."""
    return [{"operation": op, **TABLE[op]} for op in TABLE]
