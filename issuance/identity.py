"""The holder's identity as the back office knows it, and the Japanese-era date forms the card uses.

Only synthetic identities are ever built by this project (personas, tests, demos).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt

from mynaemu.issuance import validate

# Era start dates (first day of each era). The card and the signing certificate encode
# birth dates with an era: 照合番号B / the 券面AP birth key as era-year YYMMDD
# (card-interface.md §4.3) and the signing certificate's 1.2.392.200149.8.5.5.4 as
# EYYYYMMDD with an era digit (§7.3).
ERAS = (
    # (era digit in certificates, first day, name)
    (5, _dt.date(2019, 5, 1), "令和"),
    (4, _dt.date(1989, 1, 8), "平成"),
    (3, _dt.date(1926, 12, 25), "昭和"),
    (2, _dt.date(1912, 7, 30), "大正"),
    (1, _dt.date(1868, 1, 25), "明治"),
)

SEX_CODES = {"1": "男", "2": "女", "9": "適用不能", "0": "不明"}  # JIS X 0303, spec §3.2


def era_of(day: _dt.date) -> tuple[int, int, str]:
    """(era digit, era year, era name) of a date; era year 1 is 元年."""
    for digit, start, name in ERAS:
        if day >= start:
            return digit, day.year - start.year + 1, name
    raise ValueError(f"date before 明治: {day.isoformat()}")


def era_yymmdd(day: _dt.date) -> str:
    """Birth date as era-year YYMMDD, e.g. 1980-02-17 (昭和55) -> '550217' (spec §4.3)."""
    _, year, _ = era_of(day)
    return f"{year % 100:02d}{day.month:02d}{day.day:02d}"


def jpki_birth(day: _dt.date) -> str:
    """Birth date as the signing certificate writes it: era digit + YYYYMMDD (spec §7.3)."""
    digit, _, _ = era_of(day)
    return f"{digit}{day:%Y%m%d}"


@dataclasses.dataclass(frozen=True)
class Identity:
    """基本4情報 plus the numbers and places a card is personalised with.

    name: 氏名 with U+3000 between family and given name (spec §3.2 worked example).
    address: 住所, full-width digits as on the card.
    sex: '1' male, '2' female, '9' not applicable (JIS X 0303).
    individual_number: 12 digits with a valid check digit (rules.md §20 M2).
    juminhyo_code: 住民票コード, 11 digits (AP-6).
    municipality_code: 全国地方公共団体コード, 5 digits (card-info record, §3.4).
    prefecture_romaji / city_romaji: the signing certificate's L= values (§7.3).
    name_alt / address_alt: 代替文字の使用位置, one '0'/'1' per character; None = all '0'.
    """

    name: str
    address: str
    birth: _dt.date
    sex: str
    individual_number: str
    juminhyo_code: str
    municipality_code: str = "13221"
    prefecture_romaji: str = "Tokyo-to"
    city_romaji: str = "Kiyose-shi"
    name_kana: str = ""
    name_alt: str | None = None
    address_alt: str | None = None

    def __post_init__(self):
        # text and date rules of validate.py (docs/input-limits.md): the same guard for every
        # caller, CLI or Python API
        validate.text(self.name, "name")
        validate.text(self.address, "address")
        validate.optional_text(self.name_kana, "name_kana")
        validate.ascii_token(self.prefecture_romaji, "prefecture_romaji", limit=validate.LIMITS["romaji"])
        validate.ascii_token(self.city_romaji, "city_romaji", limit=validate.LIMITS["romaji"])
        validate.check_birth(self.birth)
        if self.sex not in SEX_CODES:
            raise ValueError(f"sex must be one of {sorted(SEX_CODES)}, got {self.sex!r}")
        if not (len(self.individual_number) == 12 and self.individual_number.isdigit()):
            raise ValueError("individual_number must be 12 ASCII digits")
        if not (len(self.juminhyo_code) == 11 and self.juminhyo_code.isdigit()):
            raise ValueError("juminhyo_code must be 11 ASCII digits")
        if not (len(self.municipality_code) == 5 and self.municipality_code.isdigit()):
            raise ValueError("municipality_code must be 5 ASCII digits")
        for field, text in (("name_alt", self.name_alt), ("address_alt", self.address_alt)):
            if text is not None and (set(text) - {"0", "1"}):
                raise ValueError(f"{field} must be '0'/'1' flags")

    @property
    def name_alt_flags(self) -> str:
        return self.name_alt if self.name_alt is not None else "0" * len(self.name)

    @property
    def address_alt_flags(self) -> str:
        return self.address_alt if self.address_alt is not None else "0" * len(self.address)

    def age_on(self, day: _dt.date) -> int:
        """Completed years on `day` (a birthday counts from its own date)."""
        years = day.year - self.birth.year
        if (day.month, day.day) < (self.birth.month, self.birth.day):
            years -= 1
        return years
