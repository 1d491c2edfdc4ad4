"""The municipality's 証明発行サーバ (certificate-issuing server) behind the kiosk centre.

It answers requests the 証明書交付センター relays (CVS-18 item 1): it finds the person by the
user-authentication certificate's serial (新方式) or by its own 利用者ID (変換方式, 現行方式;
CVS-18: "利用者ID又は利用者証明用電子証明書シリアル番号"), edits that person's document from the
resident, seal and tax records (CVS-15: 既存住基システム, 税システム …) and creates it as a signed PDF
(CVS-15; issuance/kiosk/documents.py). It keeps an issuance history (CVS-18 item 3) without personal
data: instant, document, method, document serial, 検証コード, fee, the card and the kiosk. The
history is an object given to the server (`history=`): the store's (store.StoreKioskHistory,
which writes each row with its audit record under `service:municipality:<code>` in one
transaction, SEC-8), or, for an in-process stack without a store, records.MemoryKioskHistory.

Rules applied here:
- CVS-6: service from 6:30 to 23:00 (JST); a municipality may set narrower hours within that.
- FEE-4: a per-document kiosk fee, lower than at the counter (000:10107-10109). The seeds give no
  amounts (rules.md §19 gap 12); decision: ¥200 at the kiosk, ¥300 at the counter, for each document.
- NUM-13: the 個人番号 only on a 住民票 and only when asked for; never on a tax certificate.
- CVS-8: 住民票の写し, 印鑑登録証明書, 税証明 (所得・課税証明書). 戸籍 documents are not modelled.
- Decisions outside the seeds: a 印鑑登録証明書 needs a seal registration (none under 15,
  residents.SEAL_MIN_AGE); the tax certificate of fiscal year Y (課税年度, income of Y-1) is
  available from 1 June of Y; amounts are synthetic, from a simplified formula.

The municipality signs as its mayor (市区町村長) with a certificate of the installation's TEST
LGPKI (issuance/kiosk/lgpki.py): `keyfiles.load_or_create_signer(home, code)` keeps one per
municipality under `<home>/kiosk/lgpki/`, beside the root a relying party trusts to check the PDFs (`pdfsig`,
pyHanko, `mynaemu kiosk verify-pdf`; docs/verifying-documents.md).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import secrets
import time

from mynaemu.issuance.kiosk import documents, lgpki
from mynaemu.issuance.kiosk.residents import Resident, ResidentDirectory
from mynaemu.issuance.kiosk.trust import refuse_unless_active
from mynaemu.issuance.kiosk.wire import (
    METHODS, SERVICE_CLOSES, SERVICE_OPENS, Refusal, within_service_hours,
)
from mynaemu.issuance.clock import JST
from mynaemu.issuance.store.kiosk_history import KioskIssue
from mynaemu.issuance.store.values import scrub

KIOSK_FEES = {"juminhyo": 200, "inkan": 200, "zei": 200}      # FEE-4 (amounts: decision)
COUNTER_FEES = {"juminhyo": 300, "inkan": 300, "zei": 300}
TAX_AVAILABLE_FROM = (6, 1)        # decision: a fiscal year's certificate from 1 June

# Municipalities known by name (全国地方公共団体コード -> name); others get a TEST name.
MUNICIPALITY_NAMES = {"13221": "東京都清瀬市"}
DEFAULT_MAYOR = "見本\u3000一郎"   # synthetic
# The terminal of a request made to the municipality directly, not relayed from a kiosk by the
# centre (the centre always names its kiosk).
DIRECT = "municipality-direct"


def document_serial() -> str:
    """A document's serial: 16 random hex digits, never with a run of exactly 12 decimal digits.
    Such a run reads as a 個人番号 to the scrubbers of the audit trail and the logs (store.scrub),
    which would mask it in the document's audit record and lose the link between the record and
    the history row (about 1 serial in 250 would be hit)."""
    while True:
        serial = secrets.token_hex(8).upper()
        if scrub(serial) == serial:
            return serial


def municipality_name(code: str) -> str:
    return MUNICIPALITY_NAMES.get(code, f"TEST市{code}")


def check_hours(opens: _dt.time, closes: _dt.time) -> tuple[_dt.time, _dt.time]:
    """A municipality's hours must lie within 6:30-23:00 (CVS-6) and not be empty."""
    if not (SERVICE_OPENS <= opens < closes <= SERVICE_CLOSES):
        raise ValueError(f"service hours {opens:%H:%M}-{closes:%H:%M} must lie within "
                         f"{SERVICE_OPENS:%H:%M}-{SERVICE_CLOSES:%H:%M} (CVS-6)")
    return opens, closes


def fiscal_year_available(at: _dt.datetime) -> int:
    """The latest 課税年度 whose certificate can be issued on `at`."""
    day = at.astimezone(JST).date()
    return day.year if (day.month, day.day) >= TAX_AVAILABLE_FROM else day.year - 1


def tax_record(resident: Resident, fiscal_year: int) -> dict:
    """The 所得・課税証明書 figures of fiscal year `fiscal_year` (income of the previous year).

    Synthetic, from a simplified formula: 給与所得控除 30 % + ¥80,000 within ¥550,000..¥1,950,000;
    deductions = 基礎控除 ¥430,000 + 15 % social insurance; 所得割 6 % (municipal) and 4 %
    (prefectural) of the taxable income rounded down to ¥1,000, plus 均等割 ¥3,500 / ¥1,500;
    nobody with an income of ¥450,000 or less is taxed.
    """
    salary = resident.salary_income
    if salary:
        # Give each year its own figure, steadily, from the base salary.
        salary = int(salary * (1 + 0.01 * ((fiscal_year * 7 + int(resident.juminhyo_code[-3:])) % 9 - 4)))
        salary -= salary % 1000
    salary_deduction = min(1_950_000, max(550_000, salary * 30 // 100 + 80_000)) if salary else 0
    income = max(0, salary - salary_deduction)
    deductions = 430_000 + salary * 15 // 100 if salary else 0
    taxable = max(0, income - deductions)
    taxable -= taxable % 1000
    if income <= 450_000:
        municipal = prefectural = 0
    else:
        municipal = taxable * 6 // 100 + 3_500
        prefectural = taxable * 4 // 100 + 1_500
        municipal -= municipal % 100
        prefectural -= prefectural % 100
    return {"fiscal_year": fiscal_year, "income_year": fiscal_year - 1, "salary_income": salary,
            "income": income, "deductions": deductions, "taxable_income": taxable,
            "municipal_tax": municipal, "prefectural_tax": prefectural}


def document_fields(resident: Resident, document: str, *, with_number: bool, at: _dt.datetime,
                    with_code: bool = False) -> dict:
    """The printed fields of `document` for `resident` (Refusal when it cannot be issued)."""
    if document == "juminhyo":
        members = []
        for m in resident.household:
            # DATA-6: the fields of the 発行用住民票ファイル that apply to a Japanese resident
            since = m.address_since or m.became_resident
            row = {"name": m.name, "birth": m.birth.isoformat(), "sex": m.sex, "relation": m.relation,
                   "became_resident": m.became_resident.isoformat(), "address_since": since.isoformat(),
                   "notified_on": m.notified_on.isoformat() if m.notified_on else None,
                   "previous_address": m.previous_address, "remarks": m.remarks}
            if with_number:  # NUM-13: only on explicit request
                row["individual_number"] = m.individual_number
            if with_code:    # the 住民票コード, likewise only on request
                row["juminhyo_code"] = m.juminhyo_code
            members.append(row)
        return {"address": resident.address, "head_of_household": resident.head_of_household,
                "honseki": resident.honseki, "members": members, "scope": "all"}
    if with_number:
        raise Refusal("bad-request", "the 個人番号 can be printed only on a 住民票 (NUM-13)")
    if with_code:
        raise Refusal("bad-request", "the 住民票コード can be printed only on a 住民票")
    if document == "inkan":
        if resident.seal is None:
            raise Refusal("document-unavailable", "the resident has no seal registration (印鑑登録)")
        return {"registration_number": resident.seal.number, "name": resident.name,
                "birth": resident.birth.isoformat(), "sex": resident.sex, "address": resident.address,
                "registered_on": resident.seal.registered_on.isoformat(),
                "seal_text": resident.seal.seal_text}
    if document == "zei":
        record = tax_record(resident, fiscal_year_available(at))
        return {"name": resident.name, "address": resident.address,
                "birth": resident.birth.isoformat(), **record}
    raise Refusal("bad-request", f"unknown document {document!r}")


@dataclasses.dataclass(frozen=True)
class IssuedDocument:
    document: str
    pdf: bytes
    verification_code: str
    key_id: str
    fee: int
    issued_at: str
    serial: str
    render_seconds: float


class MunicipalityServer:
    """One municipality's 証明発行サーバ: finds the resident, edits and signs the document."""

    def __init__(self, code: str, signer: lgpki.Signer, directory: ResidentDirectory, *, history,
                 name: str | None = None, mayor: str = DEFAULT_MAYOR,
                 hours: tuple[_dt.time, _dt.time] = (SERVICE_OPENS, SERVICE_CLOSES),
                 fees: dict | None = None, methods=METHODS):
        if not (isinstance(code, str) and len(code) == 5 and code.isdigit()):
            raise ValueError(f"municipality code must be 5 digits, got {code!r}")
        if not isinstance(signer, lgpki.Signer):
            raise TypeError("the municipality signer must be an lgpki.Signer")
        if signer.code != code:
            raise ValueError(f"the signer's certificate is municipality {signer.code}'s, not {code}'s")
        if not isinstance(directory, ResidentDirectory):
            raise TypeError("directory must implement ResidentDirectory")
        self.code = code
        self.name = name or municipality_name(code)
        self.mayor = mayor
        self.signer = signer
        self.directory = directory
        self.opens, self.closes = check_hours(*hours)
        self.fees = dict(KIOSK_FEES if fees is None else fees)
        for doc in documents.DOCUMENTS:
            if not isinstance(self.fees.get(doc), int) or self.fees[doc] < 0:
                raise ValueError(f"fee for {doc} must be a non-negative int")
        unknown = set(methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}")
        self.methods = tuple(methods)
        if not (callable(getattr(history, "record", None)) and callable(getattr(history, "entries", None))):
            raise TypeError("history must be a kiosk history (store.StoreKioskHistory or "
                            "records.MemoryKioskHistory)")
        self.history = history   # CVS-18 item 3

    @property
    def trust_root(self):
        """The TEST LGPKI root the municipality's signing certificate chains to."""
        return self.signer.root

    def open_at(self, at: _dt.datetime) -> bool:
        return within_service_hours(at, self.opens, self.closes)

    def produce_for_certificate(self, certificate, document: str, *, with_number: bool,
                                at: _dt.datetime, method: str = "shin",
                                with_code: bool = False, kiosk_id: str = DIRECT) -> IssuedDocument:
        """新方式: the holder of this user-authentication certificate (CVS-18: found by its
        serial, then matched byte for byte where the directory keeps certificates)."""
        self._admit(method, at)
        return self._produce(self.directory.resident_for_certificate(certificate), document,
                             with_number=with_number, at=at, method=method, with_code=with_code,
                             kiosk_id=kiosk_id)

    def produce_for_user_id(self, user_id: str, document: str, *, with_number: bool,
                            at: _dt.datetime, method: str = "genko",
                            with_code: bool = False, card_serial: str | None = None,
                            kiosk_id: str = DIRECT) -> IssuedDocument:
        """変換方式 / 現行方式: the person with this municipality's 利用者ID (CVS-14); with
        card_serial (現行方式, from the 条例利用AP) that card's state is the one checked."""
        self._admit(method, at)
        found = (self.directory.resident_for_user_id(user_id) if card_serial is None
                 else self.directory.resident_for_user_id(user_id, card_serial=card_serial))
        return self._produce(found, document, with_number=with_number, at=at, method=method,
                             with_code=with_code, kiosk_id=kiosk_id)

    def _admit(self, method: str, at: _dt.datetime) -> None:
        if method not in self.methods:
            raise Refusal("method-unavailable", f"{self.name} does not offer {documents.METHOD_LABELS[method]}")
        if not self.open_at(at):
            raise Refusal("outside-hours", f"{self.name} issues from {self.opens:%H:%M} to "
                                           f"{self.closes:%H:%M} (CVS-6); it is "
                                           f"{at.astimezone(JST):%H:%M} JST")

    def _produce(self, resident: Resident | None, document: str, *, with_number: bool,
                 at: _dt.datetime, method: str, with_code: bool = False,
                 kiosk_id: str = DIRECT) -> IssuedDocument:
        if resident is None or resident.municipality_code != self.code:
            raise Refusal("resident-unknown", f"{self.name} has no resident for this request")
        if resident.status != "resident":
            raise Refusal("resident-unknown", f"the person is no longer a resident of {self.name}")
        if resident.card is not None:
            # STATE-1: only an active, unexpired card is served. This is the one check of
            # 現行方式, which has no certificate and no OCSP (kiosk_trust).
            refuse_unless_active(resident.card, at)
        if document not in documents.DOCUMENTS:
            raise Refusal("bad-request", f"unknown document {document!r}")
        fields = document_fields(resident, document, with_number=with_number, at=at,
                                 with_code=with_code)
        serial = document_serial()
        issued_at = at.astimezone(JST).replace(microsecond=0).isoformat()
        content = {"format": documents.FORMAT, "version": documents.VERSION, "document": document,
                   "serial": serial, "issued_at": issued_at, "method": method,
                   "municipality": {"code": self.code, "name": self.name, "mayor": self.mayor},
                   "fee": self.fees[document], "with_number": bool(with_number), "fields": fields}
        t0 = time.perf_counter()
        rendered = documents.render_pdf(content, self.signer)
        render_seconds = time.perf_counter() - t0
        # CVS-18 item 3: the issuance history, no personal data; with its audit record (SEC-8).
        # Written before the document leaves: a document the history cannot record is not issued.
        self.history.record(KioskIssue(
            at=_dt.datetime.fromisoformat(issued_at), municipality_code=self.code, document=document,
            method=method, serial=serial, verification_code=rendered.verification_code,
            fee=self.fees[document], with_number=bool(with_number), kiosk_id=kiosk_id,
            application_id=resident.card.application_id if resident.card is not None else None))
        return IssuedDocument(document, rendered.pdf, rendered.verification_code, rendered.key_id,
                              self.fees[document], issued_at, serial, render_seconds)
