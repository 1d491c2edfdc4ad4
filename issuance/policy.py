"""Validity and eligibility policy of the card and its JPKI certificates, as pure date functions.

Covers rules.md §5 (ELIG-2..4), §6 (VAL-1..8), §9.4 (FLOW-RENEW-3), §10 STATE-3 and §20 M1/M9.
Nothing here reads a clock or does I/O: every function is given the dates it needs, and "today"
is always a calendar date in Japan time (JST).

Every point the seeds leave open (rules.md §19 item 5, VAL-15, ELIG-3, ELIG-6, M1) is decided once
in docs/policy-decisions.md; the comments below cite those decisions as D1..D13.

Two rule sets are chosen per deployment (rule_set()):
  * ``seed-2013``: the documents as written. The 10-year card starts at age 20, judged at card
    issue (ELIG-4, VAL-1, VAL-2, 000:7223).
  * ``current`` (default): since 2022-04-01 the 10-year card starts at age 18, judged on the date
    the application is received (M1); before that date the seed's 20 applies.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt

__all__ = [
    "JST", "RULE_SET_NAMES", "DEFAULT_RULE_SET", "SIGNING_MIN_AGE", "PIN_BY_REPRESENTATIVE_UNDER",
    "RENEWAL_WINDOW_MONTHS", "RuleSet", "Decision", "rule_set",
    "age_on", "birthday_in", "nth_birthday_after", "add_months", "max_span_end",
    "card_term_years", "card_validity", "auth_cert_validity", "sign_cert_validity",
    "renewal_window", "in_renewal_window", "renewal_allowed",
    "signing_cert_eligible", "auth_cert_eligible", "pin_setter",
    "expiry_instant", "start_instant", "jst_date", "expired",
]

# Japan time: every day the rules count is a JST date. Defined here because this module imports
# nothing outside the standard library (tests/issuance/test_policy.py); everything else takes
# it from issuance/clock.py, the back office's one home for time.
JST = _dt.timezone(_dt.timedelta(hours=9), "JST")

SIGNING_MIN_AGE = 15              # ELIG-2: no signing certificate under 15 (same in both rule sets)
PIN_BY_REPRESENTATIVE_UNDER = 15  # ELIG-3: the 法定代理人 sets the PINs under 15
RENEWAL_WINDOW_MONTHS = 3         # VAL-7: renewable from 3 months before expiry
AGE_BASES = ("application", "issue")  # D8: the date the ELIG-4 bracket is judged on


# --------------------------------------------------------------------------------------------
# rule sets
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RuleSet:
    """The parameters that differ between deployments.

    adult_age: age from which the card runs to the 10th birthday (ELIG-4 / VAL-1).
    legacy_adult_age / adult_age_from: before ``adult_age_from`` (judged date) the bracket uses
        ``legacy_adult_age`` instead (M1: 20 before 2022-04-01). Both None when there is no switch.
    age_basis: "application" (date the application is received) or "issue" (card issue date),
        the date the bracket is judged on (D8).
    """

    name: str
    adult_age: int
    legacy_adult_age: int | None = None
    adult_age_from: _dt.date | None = None
    age_basis: str = "issue"
    card_years_adult: int = 10   # VAL-1
    card_years_minor: int = 5    # VAL-2
    cert_years: int = 5          # VAL-4

    def __post_init__(self):
        if self.age_basis not in AGE_BASES:
            raise ValueError(f"age_basis must be one of {', '.join(AGE_BASES)}; got {self.age_basis!r}")
        if (self.legacy_adult_age is None) != (self.adult_age_from is None):
            raise ValueError("legacy_adult_age and adult_age_from must be given together")
        for field in ("adult_age", "card_years_adult", "card_years_minor", "cert_years"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{field} must be a positive int; got {value!r}")

    def adult_age_on(self, judged_on: _dt.date) -> int:
        """The 10-year-card age threshold in force on the judged date (M1)."""
        _need_date("judged_on", judged_on)
        if self.adult_age_from is not None and judged_on < self.adult_age_from:
            return self.legacy_adult_age  # type: ignore[return-value]
        return self.adult_age


_RULE_SETS = {
    # ELIG-4 says the bracket is the age "at card issue" (000:7223-7224).
    "seed-2013": RuleSet(name="seed-2013", adult_age=20, age_basis="issue"),
    # M1: 18 from 2022-04-01, judged on the date J-LIS receives the application.
    "current": RuleSet(name="current", adult_age=18, legacy_adult_age=20,
                       adult_age_from=_dt.date(2022, 4, 1), age_basis="application"),
}
RULE_SET_NAMES = tuple(_RULE_SETS)
DEFAULT_RULE_SET = "current"


def rule_set(name: str = DEFAULT_RULE_SET, *, age_basis: str | None = None) -> RuleSet:
    """The named rule set; ``age_basis`` overrides the date the age bracket is judged on (D8)."""
    try:
        rules = _RULE_SETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown rule set {name!r}; valid names: {', '.join(RULE_SET_NAMES)}") from None
    if age_basis is not None:
        rules = dataclasses.replace(rules, age_basis=age_basis)
    return rules


@dataclasses.dataclass(frozen=True)
class Decision:
    """An allow/refuse answer for the workflow and CLI.

    allowed: the outcome. reason: one English line naming the rule id, to print as is.
    code: a stable machine word for branching ("in_window", "not_yet", "expired", "eligible",
    "under_15", "guardianship", "declined").
    """

    allowed: bool
    reason: str
    code: str

    def __bool__(self) -> bool:
        return self.allowed


# --------------------------------------------------------------------------------------------
# date arithmetic (D1-D4)
# --------------------------------------------------------------------------------------------

def _need_date(name: str, value) -> None:
    # datetime is a subclass of date; mixing instants into day arithmetic would hide time zones.
    if not isinstance(value, _dt.date) or isinstance(value, _dt.datetime):
        raise TypeError(f"{name} must be a datetime.date (not datetime); got {type(value).__name__}")


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if _is_leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def birthday_in(birth: _dt.date, year: int) -> _dt.date:
    """The holder's birthday in ``year``.

    D2: a 29 February birth has its birthday on 1 March in common years, the first day on which
    the new age holds under 年齢計算ニ関スル法律 (age is attained at the end of the day before).
    """
    _need_date("birth", birth)
    if birth.month == 2 and birth.day == 29 and not _is_leap(year):
        return _dt.date(year, 3, 1)
    return birth.replace(year=year)


def age_on(birth: _dt.date, day: _dt.date) -> int:
    """Completed years on ``day``: the age is attained on the birthday itself (D2, D12)."""
    _need_date("birth", birth)
    _need_date("day", day)
    if day < birth:
        raise ValueError(f"date {day.isoformat()} is before the birth date {birth.isoformat()}")
    years = day.year - birth.year
    if day < birthday_in(birth, day.year):
        years -= 1
    return years


def nth_birthday_after(birth: _dt.date, base: _dt.date, n: int) -> _dt.date:
    """The n-th birthday strictly after ``base`` (D1: a birthday on ``base`` itself is not counted)."""
    _need_date("birth", birth)
    _need_date("base", base)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    first_year = base.year if birthday_in(birth, base.year) > base else base.year + 1
    return birthday_in(birth, first_year + n - 1)


def add_months(day: _dt.date, months: int) -> _dt.date:
    """``day`` moved by ``months`` calendar months, the day of month clamped to the month's end
    (D3: 05-31 minus 3 months is 02-28, or 02-29 in a leap year)."""
    _need_date("day", day)
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise ValueError(f"{day.isoformat()} {months:+d} months is out of the calendar range")
    return _dt.date(year, month, min(day.day, _month_days(year, month)))


def _add_months_eom(day: _dt.date, months: int) -> _dt.date:
    # D4: the last day of a month maps to the last day of the target month, so a window that
    # opened on a clamped month end (02-28 for 05-31) spans back to the full 3 months.
    moved = add_months(day, months)
    if day.day == _month_days(day.year, day.month):
        return moved.replace(day=_month_days(moved.year, moved.month))
    return moved


def _add_years(day: _dt.date, years: int) -> _dt.date:
    # Same convention as birthday_in (D2): 29 February lands on 1 March in common years.
    if day.month == 2 and day.day == 29 and not _is_leap(day.year + years):
        return _dt.date(day.year + years, 3, 1)
    return day.replace(year=day.year + years)


def max_span_end(issue_date: _dt.date, years: int) -> _dt.date:
    """VAL-8: the latest end a validity counted ``years`` from an in-window renewal can have when
    issued on ``issue_date``: issue + 3 months (month end to month end) + ``years`` (D4).
    5 for a certificate ("5年3か月"), 10 for an adult card ("10年3か月")."""
    _need_date("issue_date", issue_date)
    return _add_years(_add_months_eom(issue_date, RENEWAL_WINDOW_MONTHS), years)


# --------------------------------------------------------------------------------------------
# renewal window (VAL-7, VAL-9, FLOW-RENEW-3)
# --------------------------------------------------------------------------------------------

def renewal_window(expiry: _dt.date) -> tuple[_dt.date, _dt.date]:
    """(opens, closes), both inclusive: 3 months before expiry up to the expiry day (VAL-7, D3)."""
    _need_date("expiry", expiry)
    return add_months(expiry, -RENEWAL_WINDOW_MONTHS), expiry


def in_renewal_window(expiry: _dt.date, day: _dt.date) -> bool:
    """True when ``day`` lies inside the renewal window of ``expiry`` (STATE-3 item 4)."""
    _need_date("day", day)
    opens, closes = renewal_window(expiry)
    return opens <= day <= closes


def renewal_allowed(expiry: _dt.date, today: _dt.date) -> Decision:
    """Whether a card or certificate expiring on ``expiry`` may be renewed on ``today`` (JST date).

    VAL-9's timeline "更新不可 → 更新可能 → 再発行": refused before the window, allowed inside it,
    refused after expiry, when only a re-issue (a fresh issue, D6) is possible.
    """
    opens, closes = renewal_window(expiry)
    _need_date("today", today)
    if today < opens:
        return Decision(False, f"VAL-7: renewal not yet open: the window is {opens.isoformat()}.."
                               f"{closes.isoformat()} (3 months before expiry {expiry.isoformat()})",
                        "not_yet")
    if today > closes:
        return Decision(False, f"VAL-9: expired on {expiry.isoformat()}, renewal no longer possible;"
                               " apply for a re-issue (fresh issue)", "expired")
    return Decision(True, f"VAL-7: inside the renewal window {opens.isoformat()}..{closes.isoformat()};"
                          f" the new period counts from {expiry.isoformat()} (VAL-3/VAL-4)", "in_window")


def _counting_base(issue_date: _dt.date, renewal_of: _dt.date | None) -> _dt.date:
    # VAL-3 / VAL-4: an in-window renewal counts from the old expiry; anything else (no old item,
    # or a re-issue outside the window) is a fresh issue counted from the issue date (D6, D7).
    if renewal_of is None:
        return issue_date
    _need_date("renewal_of", renewal_of)
    return renewal_of if in_renewal_window(renewal_of, issue_date) else issue_date


# --------------------------------------------------------------------------------------------
# validity periods (ELIG-4, VAL-1..VAL-6)
# --------------------------------------------------------------------------------------------

def card_term_years(birth: _dt.date, judged_on: _dt.date, rules: RuleSet) -> int:
    """10 or 5: the ELIG-4 bracket by the age on the judged date (VAL-1, VAL-2, M1)."""
    if not isinstance(rules, RuleSet):
        raise TypeError(f"rules must be a RuleSet; got {type(rules).__name__}")
    if age_on(birth, judged_on) >= rules.adult_age_on(judged_on):
        return rules.card_years_adult
    return rules.card_years_minor


def card_validity(birth: _dt.date, issue_date: _dt.date, rules: RuleSet, *,
                  renewal_of: _dt.date | None = None,
                  applied_on: _dt.date | None = None) -> tuple[_dt.date, _dt.date]:
    """(start, expiry) of a card issued on ``issue_date``.

    expiry is the 10th (adult) or 5th birthday after the counting base (VAL-1, VAL-2, D1); the base
    is the old card's expiry ``renewal_of`` when the issue falls in its renewal window (VAL-3),
    else the issue date. start is always the issue date (D9). ``applied_on`` is the date the
    application was received; it decides the bracket when ``rules.age_basis`` is "application"
    and defaults to the issue date (D8).
    """
    _need_date("birth", birth)
    _need_date("issue_date", issue_date)
    if issue_date < birth:
        raise ValueError(f"issue date {issue_date.isoformat()} is before the birth date {birth.isoformat()}")
    if not isinstance(rules, RuleSet):
        raise TypeError(f"rules must be a RuleSet; got {type(rules).__name__}")
    judged_on = issue_date
    if applied_on is not None:
        _need_date("applied_on", applied_on)
        if applied_on > issue_date:
            raise ValueError(f"application date {applied_on.isoformat()} is after the issue date "
                             f"{issue_date.isoformat()}")
        if applied_on < birth:
            raise ValueError(f"application date {applied_on.isoformat()} is before the birth date")
        if rules.age_basis == "application":
            judged_on = applied_on
    years = card_term_years(birth, judged_on, rules)
    base = _counting_base(issue_date, renewal_of)
    return issue_date, nth_birthday_after(birth, base, years)


def auth_cert_validity(birth: _dt.date, issue_date: _dt.date, card_expiry: _dt.date, rules: RuleSet, *,
                       renewal_of: _dt.date | None = None) -> tuple[_dt.date, _dt.date]:
    """(not_before, not_after) of a user-authentication certificate issued on ``issue_date``.

    not_after is the 5th birthday after the counting base (VAL-4): the old certificate's expiry
    ``renewal_of`` when issued in its renewal window, else the issue date; capped at the card's
    expiry (VAL-5). not_before is the issue date (D9).
    """
    _need_date("birth", birth)
    _need_date("issue_date", issue_date)
    _need_date("card_expiry", card_expiry)
    if not isinstance(rules, RuleSet):
        raise TypeError(f"rules must be a RuleSet; got {type(rules).__name__}")
    if issue_date < birth:
        raise ValueError(f"issue date {issue_date.isoformat()} is before the birth date {birth.isoformat()}")
    if card_expiry < issue_date:
        raise ValueError(f"VAL-5: the card expired on {card_expiry.isoformat()}, before the certificate "
                         f"issue date {issue_date.isoformat()}")
    base = _counting_base(issue_date, renewal_of)
    return issue_date, min(nth_birthday_after(birth, base, rules.cert_years), card_expiry)


def sign_cert_validity(issue_date: _dt.date, auth_not_after: _dt.date) -> tuple[_dt.date, _dt.date]:
    """(not_before, not_after) of a signing certificate: it ends with the user-authentication
    certificate (VAL-6), also when issued later, e.g. after an 異動 (MOV-1, VAL-10)."""
    _need_date("issue_date", issue_date)
    _need_date("auth_not_after", auth_not_after)
    if auth_not_after < issue_date:
        raise ValueError(f"VAL-6: the user-authentication certificate expired on {auth_not_after.isoformat()},"
                         f" before the signing certificate issue date {issue_date.isoformat()}")
    return issue_date, auth_not_after


# --------------------------------------------------------------------------------------------
# eligibility (ELIG-2, ELIG-3, M9)
# --------------------------------------------------------------------------------------------

def signing_cert_eligible(birth: _dt.date, on_date: _dt.date, *, guardianship: bool,
                          declined: bool) -> Decision:
    """May a signing certificate be issued on ``on_date``? No under 15 or for a 成年被後見人
    (ELIG-2), nor when the applicant ticked 不要 (M9). Judged on the certificate's own issue
    date, so a later issue after the 15th birthday is allowed (D10)."""
    age = age_on(birth, on_date)
    for name, flag in (("guardianship", guardianship), ("declined", declined)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool; got {type(flag).__name__}")
    if age < SIGNING_MIN_AGE:
        return Decision(False, f"ELIG-2: no signing certificate under {SIGNING_MIN_AGE} (age {age} on "
                               f"{on_date.isoformat()})", "under_15")
    if guardianship:
        return Decision(False, "ELIG-2: no signing certificate for an adult under guardianship", "guardianship")
    if declined:
        return Decision(False, "M9: the applicant declined the signing certificate", "declined")
    return Decision(True, f"ELIG-2: signing certificate allowed (age {age} on {on_date.isoformat()})", "eligible")


def auth_cert_eligible(birth: _dt.date, on_date: _dt.date, *, declined: bool) -> Decision:
    """May a user-authentication certificate be issued? Every age may hold one (ELIG-2, ELIG-4);
    only the applicant's opt-out refuses it (M9)."""
    age = age_on(birth, on_date)
    if not isinstance(declined, bool):
        raise TypeError(f"declined must be a bool; got {type(declined).__name__}")
    if declined:
        return Decision(False, "M9: the applicant declined the user-authentication certificate", "declined")
    return Decision(True, f"ELIG-4: user-authentication certificate allowed at any age (age {age})", "eligible")


def pin_setter(birth: _dt.date, on_date: _dt.date) -> str:
    """Who sets the PINs on ``on_date``: "legal_representative" under 15 (ELIG-3, D11), else "holder"."""
    if age_on(birth, on_date) < PIN_BY_REPRESENTATIVE_UNDER:
        return "legal_representative"
    return "holder"


# --------------------------------------------------------------------------------------------
# instants (D5)
# --------------------------------------------------------------------------------------------

def expiry_instant(day: _dt.date) -> _dt.datetime:
    """The last second of an expiry day in Japan time: ``day`` 23:59:59+09:00 (D5)."""
    _need_date("day", day)
    return _dt.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=JST)


def start_instant(day: _dt.date) -> _dt.datetime:
    """The first second of a start day in Japan time: ``day`` 00:00:00+09:00 (D5)."""
    _need_date("day", day)
    return _dt.datetime(day.year, day.month, day.day, tzinfo=JST)


def jst_date(instant: _dt.datetime) -> _dt.date:
    """The Japan-time calendar date of an aware instant (the "today" every function takes)."""
    if not isinstance(instant, _dt.datetime) or instant.utcoffset() is None:
        raise ValueError("instant must be a timezone-aware datetime")
    return instant.astimezone(JST).date()


def expired(expiry: _dt.date, now: _dt.datetime) -> bool:
    """True once ``now`` is past the end of the expiry day in Japan time (D5)."""
    _need_date("expiry", expiry)
    return jst_date(now) > expiry
