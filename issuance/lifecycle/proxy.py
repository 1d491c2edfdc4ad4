"""Handing the card to a 任意代理人 (FLOW-PROXY-1..6): who may come for whom, with which documents."""
from __future__ import annotations

import dataclasses
import datetime as _dt

from mynaemu.issuance import policy, validate
from mynaemu.issuance.errors import BadInput

__all__ = ["BASE_PROXY_DOCS", "PROXY_CONDITIONS", "PROXY_RELATIONS", "PROXY_DOCUMENTS", "ProxyHandover",
           "check_proxy"]

# FLOW-PROXY-3: principal's condition -> {relation of the proxy -> extra documents}
BASE_PROXY_DOCS = ("letter-of-authority", "proxy-photo-id", "principal-photo-id")  # FLOW-PROXY-2, -3
PROXY_CONDITIONS = {
    "homebound-with-household": {"household-member": ("household-proof", "cannot-go-out-proof")},
    "homebound-alone": {
        "relative": ("cannot-go-out-proof", "family-relationship-proof"),
        "care-worker": ("cannot-go-out-proof", "care-contract", "care-employment-proof"),
    },
    "facility-resident": {
        "relative": ("facility-residence-proof", "family-relationship-proof", "municipality-approval"),
        "facility-staff": ("facility-residence-proof", "facility-employment-proof", "municipality-approval"),
    },
    # FLOW-PROXY-4: merely busy is never a ground.
    "busy": {},
}
PROXY_RELATIONS = ("household-member", "relative", "care-worker", "facility-staff", "neighbour", "agent")
PROXY_DOCUMENTS = (
    "letter-of-authority",        # 委任状 (FLOW-PROXY-2)
    "proxy-photo-id",             # 代理人の顔写真付き本人確認書類
    "principal-photo-id",         # 本人の顔写真付き本人確認書類
    "household-proof",            # 同一世帯であることの確認
    "cannot-go-out-proof",        # 外出困難の証明 (診断書, 障害者手帳)
    "family-relationship-proof",  # 親族関係の証明 (戸籍謄本等)
    "care-contract",              # 介護契約書の原本
    "care-employment-proof",      # 介護事業者の在職証明
    "facility-residence-proof",   # 施設入所の証明
    "facility-employment-proof",  # 施設職員であることの証明
    "municipality-approval",      # 市町村が適当と認めること
)


@dataclasses.dataclass(frozen=True)
class ProxyHandover:
    """A 任意代理人 collecting the card (FLOW-PROXY-1..6).

    condition: the principal's situation (a PROXY_CONDITIONS key); relation: the proxy's
    relation to the principal; documents: what was shown (PROXY_DOCUMENTS); notice_id: the
    交付通知書 the proxy brought (FLOW-PROXY-2); seal_certificate_issued: the issue date of the
    principal's 印鑑登録証明書 when shown (FLOW-PROXY-6).
    """

    condition: str
    relation: str
    documents: frozenset = frozenset()
    notice_id: str | None = None
    seal_certificate_issued: _dt.date | None = None

    def to_json(self) -> dict:
        return {"condition": self.condition, "relation": self.relation, "documents": sorted(self.documents),
                "notice_id": self.notice_id,
                "seal_certificate_issued": self.seal_certificate_issued.isoformat()
                if self.seal_certificate_issued else None}


def check_proxy(proxy: ProxyHandover, *, has_sign_cert: bool, today: _dt.date, notice_id: str) -> policy.Decision:
    """May this proxy collect the card today? FLOW-PROXY-1..6 in order."""
    if proxy.condition not in PROXY_CONDITIONS:
        raise BadInput(f"unknown proxy condition {validate.shown(proxy.condition)}; "
                       f"one of {', '.join(PROXY_CONDITIONS)}")
    if proxy.relation not in PROXY_RELATIONS:
        raise BadInput(f"unknown proxy relation {validate.shown(proxy.relation)}; "
                       f"one of {', '.join(PROXY_RELATIONS)}")
    unknown = sorted(set(proxy.documents) - set(PROXY_DOCUMENTS))
    if unknown:
        raise BadInput(f"unknown proxy document(s) {', '.join(map(validate.shown, unknown))}; "
                       f"known: {', '.join(PROXY_DOCUMENTS)}")
    allowed = PROXY_CONDITIONS[proxy.condition]
    if not allowed:
        return policy.Decision(False, "FLOW-PROXY-4: a principal who is merely busy cannot send a proxy; "
                                      "the holder must come to the counter", "busy")
    if proxy.relation not in allowed:
        return policy.Decision(False, f"FLOW-PROXY-3: for {proxy.condition} the proxy must be "
                                      f"{' or '.join(allowed)}, not {proxy.relation}", "relation")
    if proxy.notice_id is None or _norm(proxy.notice_id) != notice_id:
        return policy.Decision(False, "FLOW-PROXY-2: the proxy must bring this card's 交付通知書 "
                                      "(notice id missing or not this card's)", "notice")
    missing = [d for d in BASE_PROXY_DOCS + allowed[proxy.relation] if d not in proxy.documents]
    if missing:
        return policy.Decision(False, f"FLOW-PROXY-3: missing document(s): {', '.join(missing)}", "documents")
    if has_sign_cert:
        issued = proxy.seal_certificate_issued
        if issued is None:
            return policy.Decision(False, "FLOW-PROXY-6: the card holds a signing certificate; the proxy "
                                          "must show the principal's 印鑑登録証明書 issued within 3 months",
                                   "seal_missing")
        oldest = policy.add_months(today, -3)
        if issued > today:
            return policy.Decision(False, f"FLOW-PROXY-6: 印鑑登録証明書 dated {issued.isoformat()} is after "
                                          f"today {today.isoformat()}", "seal_future")
        if issued < oldest:
            return policy.Decision(False, f"FLOW-PROXY-6: 印鑑登録証明書 issued {issued.isoformat()} is older "
                                          f"than 3 months (needs {oldest.isoformat()} or later)", "seal_old")
        return policy.Decision(True, "FLOW-PROXY-3/6: proxy accepted with a current 印鑑登録証明書", "ok")
    return policy.Decision(True, "FLOW-PROXY-5: auth-only card, proxy accepted", "ok")


def _norm(text: str) -> str:
    return text.replace("-", "").replace(" ", "").upper()
