"""The residents the コンビニ交付 services ask about, and how they are found.

What a municipality's 住民基本台帳, 印鑑 and 税 systems know about one person (``Resident``,
synthetic: ``synthesize_resident`` draws the household, seal registration and salary
deterministically from the 住民票コード), and the ``ResidentDirectory`` the centre and the
municipalities ask (CVS-18: by 利用者ID or by the user-authentication certificate), kept in
memory here (``MemoryResidentDirectory``, tests and benches; over the issuing store:
directory.py), and the municipality's 利用者ID (``derive_user_id``).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import hmac
import random
import threading
from typing import Protocol, runtime_checkable

from mynaemu.issuance.identity import Identity
from mynaemu.issuance.kiosk.wire import Refusal
from mynaemu.issuance.numbering import individual_number_from_juminhyo_code

# --- residents (住民票 data, synthetic) ------------------------------------------------------
HONSEKI_PLACEHOLDER = "（記載省略：TEST データには本籍・筆頭者がありません）"


@dataclasses.dataclass(frozen=True)
class HouseholdMember:
    name: str
    birth: _dt.date
    sex: str
    relation: str                 # 続柄: 世帯主, 妻, 夫, 子, ...
    became_resident: _dt.date     # 住民となった日
    individual_number: str
    remarks: str = ""
    # DATA-6 (発行用住民票ファイル): 住定日, 届出日, 従前の住所, and the member's 住民票コード
    address_since: _dt.date | None = None   # 住所を定めた日 (None: the same as became_resident)
    notified_on: _dt.date | None = None     # 届出日 (None: not recorded, e.g. a birth)
    previous_address: str = ""              # 前住所 ("" for a birth in the municipality)
    juminhyo_code: str = ""


@dataclasses.dataclass(frozen=True)
class SealRegistration:
    """印鑑登録 (a municipal ordinance matter, not in the seeds; synthetic)."""

    number: str
    registered_on: _dt.date
    seal_text: str


@dataclasses.dataclass(frozen=True)
class Resident:
    """What the municipality's 住民基本台帳, 印鑑 and 税 systems know about one person (synthetic).

    household lists every member of the person's household, the person included; `self_index`
    says which one is the person. salary_income is the yearly salary the tax record derives from.
    """

    juminhyo_code: str
    name: str
    birth: _dt.date
    sex: str
    address: str
    individual_number: str
    municipality_code: str
    household: tuple
    self_index: int
    head_of_household: str
    honseki: str = HONSEKI_PLACEHOLDER
    seal: SealRegistration | None = None
    salary_income: int = 0
    user_id: str | None = None
    status: str = "resident"      # resident | removed | deceased (M10)
    # The state of the card this request came with (kiosk_trust.CardStatus); None when the
    # directory keeps no cards (the in-memory one), in which case only the JPKI checks apply.
    card: object | None = None

    def age_on(self, day: _dt.date) -> int:
        years = day.year - self.birth.year
        if (day.month, day.day) < (self.birth.month, self.birth.day):
            years -= 1
        return years


_GIVEN = {"1": ["一郎", "次郎", "健一", "大輔", "翔太"], "2": ["花子", "洋子", "真由美", "結衣", "葵"]}
SEAL_MIN_AGE = 15  # decision: 印鑑登録 needs age 15 (municipal 印鑑条例 practice, outside the seeds)


def _rng_for(*parts: str) -> random.Random:
    digest = hashlib.sha256("/".join(("mynaemu-resident-v1",) + parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _birthday(birth: _dt.date, years: int) -> _dt.date:
    """The `years`-th birthday; a 29 February birth has it on 1 March in common years."""
    try:
        return birth.replace(year=birth.year + years)
    except ValueError:
        return _dt.date(birth.year + years, 3, 1)


def _member_code(juminhyo_code: str, index: int) -> str:
    # A household member's synthetic 住民票コード (11 digits).
    digest = hashlib.sha256(f"mynaemu-household/{juminhyo_code}/{index}".encode()).hexdigest()
    return f"{int(digest[:16], 16) % 10**11:011d}"


def _member_number(juminhyo_code: str, index: int) -> str:
    # A valid 個人番号 from the member's 住民票コード (rules.md §20 M2).
    return individual_number_from_juminhyo_code(_member_code(juminhyo_code, index),
                                                b"mynaemu TEST household numbering")


# Synthetic former addresses (前住所) for members who moved in; every one is fictional.
_PREVIOUS_ADDRESSES = ("埼玉県TEST市見本町二丁目５番８号", "神奈川県TEST市試験台１丁目１２番３号",
                       "千葉県TEST市架空町３丁目４番２０号", "東京都TEST区模擬町四丁目７番１号")


def _given_name(rng: random.Random, sex: str, taken: set) -> str:
    """A given name from the synthetic list that nobody in the household has yet."""
    names = _GIVEN[sex]
    first = names.index(rng.choice(names))
    for i in range(len(names)):
        candidate = names[(first + i) % len(names)]
        if candidate not in taken:
            return candidate
    return names[first]


def _with_moves(members: list, identity: Identity, on: _dt.date) -> tuple:
    """Each member's 住定日, 届出日, 前住所 and 住民票コード (DATA-6), from its own seed so the
    household drawn before stays the same."""
    rng = _rng_for(identity.juminhyo_code, "moves")
    out = []
    for index, m in enumerate(members):
        code = identity.juminhyo_code if m.individual_number == identity.individual_number \
            else _member_code(identity.juminhyo_code, index + 1)
        born_here = m.became_resident == m.birth
        since = m.became_resident if rng.random() < 0.7 else min(on, m.became_resident + _dt.timedelta(
            days=rng.randrange(30, 900)))
        previous = "" if born_here and since == m.became_resident else rng.choice(_PREVIOUS_ADDRESSES)
        notified = None if born_here and not previous else since + _dt.timedelta(days=rng.randrange(0, 14))
        out.append(dataclasses.replace(m, address_since=since, notified_on=min(notified, on) if notified else None,
                                       previous_address=previous, juminhyo_code=code))
    return tuple(out)


def synthesize_resident(identity: Identity, *, on: _dt.date, user_id: str | None = None,
                        status: str = "resident") -> Resident:
    """The municipality's records of `identity`'s holder: household, seal registration, salary.

    Deterministic in the 住民票コード: the same person always gets the same household.
    Under-15s live in a parent's household; adults head their own, sometimes with a spouse and
    a child. Only synthetic names (the holder's family name plus invented given names).
    """
    rng = _rng_for(identity.juminhyo_code)
    family = identity.name.split("\u3000")[0]
    age = identity.age_on(on)
    became = max(identity.birth, on - _dt.timedelta(days=rng.randrange(200, 4000)))
    me_rel = "世帯主"
    members = []
    taken = {identity.name.split("\u3000")[-1]}   # distinct given names in one household
    if age < 18:
        psex = rng.choice(["1", "2"])
        pbirth = identity.birth - _dt.timedelta(days=365 * rng.randrange(25, 40) + rng.randrange(365))
        given = _given_name(rng, psex, taken)
        taken.add(given)
        members.append(HouseholdMember(f"{family}\u3000{given}", pbirth, psex,
                                       "世帯主", became, _member_number(identity.juminhyo_code, 1)))
        me_rel = "子"
    me = HouseholdMember(identity.name, identity.birth, identity.sex, me_rel, became,
                         identity.individual_number)
    members.append(me)
    self_index = len(members) - 1
    if age >= 25 and rng.random() < 0.6:
        ssex = "2" if identity.sex == "1" else "1"
        sbirth = identity.birth + _dt.timedelta(days=rng.randrange(-1500, 1500))
        given = _given_name(rng, ssex, taken)
        taken.add(given)
        members.append(HouseholdMember(f"{family}\u3000{given}", sbirth, ssex,
                                       "妻" if ssex == "2" else "夫", became,
                                       _member_number(identity.juminhyo_code, 2)))
        if age >= 30 and rng.random() < 0.7:
            csex = rng.choice(["1", "2"])
            cbirth = on - _dt.timedelta(days=365 * rng.randrange(1, min(age - 22, 17)) + rng.randrange(365))
            given = _given_name(rng, csex, taken)
            taken.add(given)
            members.append(HouseholdMember(f"{family}\u3000{given}", cbirth, csex, "子",
                                           max(cbirth, became), _member_number(identity.juminhyo_code, 3)))
    head = members[0].name
    seal = None
    if age >= SEAL_MIN_AGE:
        seal = SealRegistration(f"{rng.randrange(10**6):06d}",
                                max(became, _birthday(identity.birth, SEAL_MIN_AGE)), family)
    salary = 0 if age < 18 else rng.randrange(180, 900) * 10_000
    return Resident(juminhyo_code=identity.juminhyo_code, name=identity.name, birth=identity.birth,
                    sex=identity.sex, address=identity.address,
                    individual_number=identity.individual_number,
                    municipality_code=identity.municipality_code,
                    household=_with_moves(members, identity, on),
                    self_index=self_index, head_of_household=head, seal=seal, salary_income=salary,
                    user_id=user_id, status=status)


@runtime_checkable
class ResidentDirectory(Protocol):
    """How the centre and the municipalities find a person (CVS-18: by 利用者ID or by the
    user-authentication certificate). None when nobody matches. A directory that records the
    issued certificates finds the person by the certificate's serial and then requires the
    presented certificate to equal the recorded one (kiosk_trust.issued_auth_certificate):
    a serial alone proves nothing."""

    def resident_for_certificate(self, certificate) -> Resident | None: ...

    def resident_for_user_id(self, user_id: str, card_serial: str | None = None) -> Resident | None: ...


class MemoryResidentDirectory:
    """A ResidentDirectory kept in memory (tests, benches).

    Registered with ``auth_certificates`` it matches a presented certificate byte for byte;
    registered with bare ``auth_serials`` (unit tests of the municipality) it matches the serial
    alone and relies on the centre's chain check, so it is no model of a store (StoreDirectory).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._by_serial: dict[int, Resident] = {}
        self._der: dict[int, bytes] = {}
        self._by_user_id: dict[str, Resident] = {}

    def add(self, resident: Resident, *, auth_serials=(), auth_certificates=()) -> Resident:
        from cryptography.hazmat.primitives.serialization import Encoding

        with self._lock:
            for serial in auth_serials:
                self._by_serial[int(serial)] = resident
            for cert in auth_certificates:
                self._by_serial[cert.serial_number] = resident
                self._der[cert.serial_number] = cert.public_bytes(Encoding.DER)
            if resident.user_id:
                self._by_user_id[resident.user_id] = resident
        return resident

    def resident_for_certificate(self, certificate) -> Resident | None:
        """`certificate`: an x509.Certificate (or, for serial-only entries, its serial)."""
        from cryptography.hazmat.primitives.serialization import Encoding

        serial = certificate if isinstance(certificate, int) else certificate.serial_number
        with self._lock:
            resident, der = self._by_serial.get(serial), self._der.get(serial)
        if der is not None and (isinstance(certificate, int) or not hmac.compare_digest(
                der, certificate.public_bytes(Encoding.DER))):
            raise Refusal("cert-invalid", "the certificate is not the one issued for its serial number "
                                          "(another key or issuer)")
        return resident

    def resident_for_user_id(self, user_id: str, card_serial: str | None = None) -> Resident | None:
        """card_serial is ignored: this directory keeps no cards."""
        with self._lock:
            return self._by_user_id.get(user_id)

# --- the 利用者ID --------------------------------------------------------------------------
USER_ID_DOMAIN = b"mynaemu-user-id-v1/"


def derive_user_id(secret: bytes, municipality_code: str, juminhyo_code: str) -> str:
    """The municipality's 利用者ID of a resident: a keyed function of the 住民票コード.

    Decision: the store has no 利用者ID column, so the ID is derived (HMAC-SHA256 with a secret
    of the deployment, 16 characters 0-9 A-Z); it reveals nothing about the 住民票コード.
    """
    from mynaemu.card.apps import jorei

    digest = hmac.new(secret, USER_ID_DOMAIN + f"{municipality_code}/{juminhyo_code}".encode("ascii"),
                      hashlib.sha256).digest()
    n = int.from_bytes(digest, "big")
    out = []
    for _ in range(jorei.USER_ID_LENGTH):
        n, r = divmod(n, len(jorei.USER_ID_ALPHABET))
        out.append(jorei.USER_ID_ALPHABET[r])
    return "".join(out)
