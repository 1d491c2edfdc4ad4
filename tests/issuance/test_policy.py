"""Tests for mynaemu.issuance.policy: every row of vectors/policy/*.csv, plus STATE-3 properties."""
from __future__ import annotations

import ast
import calendar
import csv
import datetime as dt
import pathlib
from tests.support import REPO
import re

import pytest
from hypothesis import given, settings, strategies as st

from mynaemu.issuance import policy as P

VECTORS = REPO / "vectors" / "policy"
RULE_ID = r"(VAL|ELIG|MOV|M|D|FLOW-REISSUE|FLOW-RENEW|STATE)-?\d+"


def _rows(name: str):
    path = VECTORS / name
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, f"{name} has no rows"
    return [pytest.param(row, id=f"{path.stem}:{line}:{row['rule'].replace(' ', '+')}")
            for line, row in enumerate(rows, start=2)]


def _d(text: str) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _b(text: str) -> bool:
    assert text in ("true", "false"), text
    return text == "true"


def _rules(row) -> P.RuleSet:
    return P.rule_set(row["rule_set"], age_basis=row.get("age_basis") or None)


# --------------------------------------------------------------------------------------------
# table vectors
# --------------------------------------------------------------------------------------------

def test_vector_tables_are_complete():
    files = sorted(p.name for p in VECTORS.glob("*.csv"))
    assert files == sorted(["auth_cert_validity.csv", "card_validity.csv", "eligibility.csv",
                            "instants.csv", "renewal.csv", "sign_cert_validity.csv", "span.csv"])
    total = 0
    seen_sets = set()
    for name in files:
        for param in _rows(name):
            row = param.values[0]
            total += 1
            ids = row["rule"].split()
            assert ids, f"{name}: row without a rule id"
            for rule_id in ids:
                assert re.fullmatch(RULE_ID, rule_id), f"{name}: {rule_id!r} is not a rule id"
            if "rule_set" in row:
                seen_sets.add(row["rule_set"])
    assert total >= 60
    assert seen_sets == set(P.RULE_SET_NAMES)


@pytest.mark.parametrize("row", _rows("card_validity.csv"))
def test_card_validity_vector(row):
    args = (_d(row["birth"]), _d(row["issue_date"]), _rules(row))
    kwargs = dict(renewal_of=_d(row["renewal_of"]), applied_on=_d(row["applied_on"]))
    if row["expiry"] == "ValueError":
        with pytest.raises(ValueError):
            P.card_validity(*args, **kwargs)
        return
    assert P.card_validity(*args, **kwargs) == (_d(row["start"]), _d(row["expiry"]))


@pytest.mark.parametrize("row", _rows("auth_cert_validity.csv"))
def test_auth_cert_validity_vector(row):
    args = (_d(row["birth"]), _d(row["issue_date"]), _d(row["card_expiry"]), _rules(row))
    kwargs = dict(renewal_of=_d(row["renewal_of"]))
    if row["not_after"] == "ValueError":
        with pytest.raises(ValueError):
            P.auth_cert_validity(*args, **kwargs)
        return
    assert P.auth_cert_validity(*args, **kwargs) == (_d(row["not_before"]), _d(row["not_after"]))


@pytest.mark.parametrize("row", _rows("sign_cert_validity.csv"))
def test_sign_cert_validity_vector(row):
    args = (_d(row["issue_date"]), _d(row["auth_not_after"]))
    if row["not_after"] == "ValueError":
        with pytest.raises(ValueError, match="VAL-6"):
            P.sign_cert_validity(*args)
        return
    assert P.sign_cert_validity(*args) == (_d(row["not_before"]), _d(row["not_after"]))


@pytest.mark.parametrize("row", _rows("renewal.csv"))
def test_renewal_vector(row):
    expiry, today = _d(row["expiry"]), _d(row["today"])
    assert P.renewal_window(expiry) == (_d(row["opens"]), _d(row["closes"]))
    decision = P.renewal_allowed(expiry, today)
    assert decision.allowed is _b(row["allowed"])
    assert decision.code == row["code"]
    assert "VAL-" in decision.reason and "\n" not in decision.reason
    assert P.in_renewal_window(expiry, today) is decision.allowed


@pytest.mark.parametrize("row", _rows("eligibility.csv"))
def test_eligibility_vector(row):
    birth, on = _d(row["birth"]), _d(row["on_date"])
    decision = P.signing_cert_eligible(birth, on, guardianship=_b(row["guardianship"]),
                                       declined=_b(row["declined"]))
    assert decision.allowed is _b(row["signing_allowed"])
    assert decision.code == row["signing_code"]
    assert ("ELIG-2" in decision.reason) or ("M9" in decision.reason)
    assert P.pin_setter(birth, on) == row["pin_setter"]


@pytest.mark.parametrize("row", _rows("span.csv"))
def test_max_span_vector(row):
    assert P.max_span_end(_d(row["issue_date"]), int(row["years"])) == _d(row["max_end"])


@pytest.mark.parametrize("row", _rows("instants.csv"))
def test_instants_vector(row):
    expiry = _d(row["expiry"])
    instant = P.expiry_instant(expiry)
    assert instant == dt.datetime.fromisoformat(row["expiry_instant"])
    assert instant.isoformat() == row["expiry_instant"]
    now = dt.datetime.fromisoformat(row["now"])
    assert P.expired(expiry, now) is _b(row["expired"])
    # "expired" means strictly past the expiry instant (whole seconds, D5).
    assert P.expired(expiry, now) is (now > instant)


# --------------------------------------------------------------------------------------------
# API contract and errors
# --------------------------------------------------------------------------------------------

def test_rule_sets():
    assert P.rule_set().name == "current" == P.DEFAULT_RULE_SET
    seed, cur = P.rule_set("seed-2013"), P.rule_set("current")
    assert (seed.adult_age, seed.age_basis) == (20, "issue")
    assert (cur.adult_age, cur.age_basis) == (18, "application")
    assert cur.adult_age_on(dt.date(2022, 3, 31)) == 20
    assert cur.adult_age_on(dt.date(2022, 4, 1)) == 18
    assert seed.adult_age_on(dt.date(2030, 1, 1)) == 20
    assert P.rule_set("current", age_basis="issue").age_basis == "issue"
    with pytest.raises(dataclasses_frozen_error()):
        cur.adult_age = 16  # type: ignore[misc]


def dataclasses_frozen_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


def test_rule_set_errors():
    with pytest.raises(ValueError) as info:
        P.rule_set("heisei")
    assert "seed-2013" in str(info.value) and "current" in str(info.value)
    with pytest.raises(ValueError, match="age_basis"):
        P.rule_set("current", age_basis="handover")
    with pytest.raises(ValueError):
        P.RuleSet(name="x", adult_age=18, legacy_adult_age=20)


def test_type_and_range_errors():
    rules = P.rule_set()
    with pytest.raises(TypeError, match="datetime.date"):
        P.card_validity(dt.datetime(1980, 1, 15), dt.date(2016, 5, 20), rules)
    with pytest.raises(TypeError, match="renewal_of"):
        P.card_validity(dt.date(1980, 1, 15), dt.date(2016, 5, 20), rules, renewal_of="2021-01-15")
    with pytest.raises(TypeError, match="RuleSet"):
        P.card_validity(dt.date(1980, 1, 15), dt.date(2016, 5, 20), "current")
    with pytest.raises(ValueError, match="before the birth"):
        P.age_on(dt.date(2000, 1, 1), dt.date(1999, 12, 31))
    with pytest.raises(ValueError):
        P.nth_birthday_after(dt.date(2000, 1, 1), dt.date(2001, 1, 1), 0)
    with pytest.raises(TypeError, match="guardianship"):
        P.signing_cert_eligible(dt.date(1980, 1, 1), dt.date(2016, 1, 1), guardianship=None, declined=False)
    with pytest.raises(ValueError, match="aware"):
        P.expired(dt.date(2026, 1, 15), dt.datetime(2026, 1, 16))
    with pytest.raises(ValueError, match="calendar range"):
        P.add_months(dt.date(9999, 12, 31), 1)


def test_decision_and_auth_eligibility():
    ok = P.auth_cert_eligible(dt.date(2010, 8, 20), dt.date(2016, 5, 20), declined=False)
    assert ok and ok.allowed and ok.code == "eligible"
    no = P.auth_cert_eligible(dt.date(1980, 1, 15), dt.date(2016, 5, 20), declined=True)
    assert not no and no.code == "declined" and "M9" in no.reason


def test_vectors_worked_example_end_to_end():
    # VAL-9 / VAL-10 as one story, chaining the functions the way the workflow will.
    birth, rules = dt.date(1980, 1, 15), P.rule_set("seed-2013")
    start, card_exp = P.card_validity(birth, dt.date(2016, 5, 20), rules)
    _, auth1 = P.auth_cert_validity(birth, start, card_exp, rules)
    assert (card_exp, auth1) == (dt.date(2026, 1, 15), dt.date(2021, 1, 15))
    assert P.sign_cert_validity(dt.date(2018, 5, 21), auth1)[1] == dt.date(2021, 1, 15)  # 異動, VAL-10
    assert P.renewal_window(auth1) == (dt.date(2020, 10, 15), dt.date(2021, 1, 15))
    assert P.renewal_allowed(auth1, dt.date(2020, 11, 1)).allowed
    _, auth2 = P.auth_cert_validity(birth, dt.date(2020, 11, 1), card_exp, rules, renewal_of=auth1)
    assert auth2 == dt.date(2026, 1, 15)


def test_module_is_import_light():
    tree = ast.parse(pathlib.Path(P.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "datetime", "dataclasses"}
    assert "policy-decisions.md" in (P.__doc__ or "")


# --------------------------------------------------------------------------------------------
# properties (STATE-3)
# --------------------------------------------------------------------------------------------

births = st.dates(min_value=dt.date(1920, 1, 1), max_value=dt.date(2030, 12, 31))
rule_sets = st.sampled_from([P.rule_set(n) for n in P.RULE_SET_NAMES]
                            + [P.rule_set("current", age_basis="issue")])


def _months_later_eom(day: dt.date, months: int) -> dt.date:
    # Independent of the module: "the same day N months later, a month end going to a month end".
    y, m = divmod(day.year * 12 + day.month - 1 + months, 12)
    m += 1
    last = calendar.monthrange(y, m)[1]
    if day.day == calendar.monthrange(day.year, day.month)[1]:
        return dt.date(y, m, last)
    return dt.date(y, m, min(day.day, last))


@st.composite
def issues(draw):
    birth = draw(births)
    issue = birth + dt.timedelta(days=draw(st.integers(0, 95 * 366)))
    applied = issue - dt.timedelta(days=draw(st.integers(0, 120)))
    return birth, issue, max(applied, birth)


@settings(max_examples=300, deadline=None)
@given(issues(), rule_sets)
def test_nth_birthday_counts_by_the_age_law(case, rules):
    # D1/D2 restated through age: exactly N birthdays in (base, expiry], and expiry is a birthday.
    birth, issue, applied = case
    _, expiry = P.card_validity(birth, issue, rules, applied_on=applied)
    years = expiry.year - issue.year
    assert years in (rules.card_years_adult - 1, rules.card_years_adult,
                     rules.card_years_minor - 1, rules.card_years_minor)
    n = P.card_term_years(birth, applied if rules.age_basis == "application" else issue, rules)
    assert P.age_on(birth, expiry) - P.age_on(birth, issue) == n
    assert P.age_on(birth, expiry - dt.timedelta(days=1)) == P.age_on(birth, expiry) - 1


@settings(max_examples=300, deadline=None)
@given(issues(), rule_sets, st.integers(-200, 200), st.booleans())
def test_state3_ordering_and_val8(case, rules, offset, renewing):
    # STATE-3 items 1, 5, 6: sign <= auth <= card expiry; renewal counts from the old expiry;
    # nothing lasts beyond VAL-8's 5y3m (certificate) / N years + 3 months (card).
    birth, first_issue, _ = case
    _, old_card = P.card_validity(birth, first_issue, rules)
    _, old_auth = P.auth_cert_validity(birth, first_issue, old_card, rules)
    issue = old_card + dt.timedelta(days=offset) if renewing else first_issue
    if issue < birth:
        return
    card_start, card_exp = P.card_validity(birth, issue, rules, renewal_of=old_card if renewing else None)
    auth_nb, auth_na = P.auth_cert_validity(birth, issue, card_exp, rules,
                                            renewal_of=old_auth if renewing else None)
    sign_nb, sign_na = P.sign_cert_validity(issue, auth_na)
    assert card_start == auth_nb == sign_nb == issue
    assert issue < sign_na <= auth_na <= card_exp
    assert auth_na <= P.max_span_end(issue, 5)
    years = P.card_term_years(birth, issue, rules)
    assert card_exp <= P.max_span_end(issue, years)
    if renewing and P.in_renewal_window(old_card, issue):
        assert P.age_on(birth, card_exp) - P.age_on(birth, old_card) == years  # VAL-3
    else:
        assert P.age_on(birth, card_exp) - P.age_on(birth, issue) == years


@settings(max_examples=500, deadline=None)
@given(st.dates(min_value=dt.date(1901, 1, 1), max_value=dt.date(9000, 12, 31)),
       st.integers(-200, 60))
def test_renewal_accepted_iff_in_window(expiry, offset):
    # STATE-3 item 4, written independently: today is in the window iff today <= expiry and
    # today + 3 months (month end to month end) reaches the expiry.
    today = expiry + dt.timedelta(days=offset)
    decision = P.renewal_allowed(expiry, today)
    expected = today <= expiry and _months_later_eom(today, 3) >= expiry
    assert decision.allowed is expected
    opens, closes = P.renewal_window(expiry)
    assert closes == expiry and opens < expiry
    assert decision.code == ("not_yet" if today < opens else "expired" if today > expiry else "in_window")
    assert (expiry - opens).days in range(89, 93)


@settings(max_examples=300, deadline=None)
@given(births, st.integers(0, 90 * 366), st.booleans(), st.booleans())
def test_state3_no_signing_under_15_or_guardianship(birth, days, guardianship, declined):
    # STATE-3 item 2 (ELIG-2) and ELIG-3.
    on = birth + dt.timedelta(days=days)
    decision = P.signing_cert_eligible(birth, on, guardianship=guardianship, declined=declined)
    under_15 = P.age_on(birth, on) < 15
    assert decision.allowed is (not under_15 and not guardianship and not declined)
    assert P.pin_setter(birth, on) == ("legal_representative" if under_15 else "holder")


@settings(max_examples=300, deadline=None)
@given(births, st.dates(min_value=dt.date(1930, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_age_matches_the_age_law(birth, day):
    # 年齢計算ニ関スル法律: the age is attained at the end of the day before the birthday, i.e.
    # it grows by one exactly on birthday_in() (1 March for a 29 February birth in a common year).
    if day < birth:
        return
    age = P.age_on(birth, day)
    bday = P.birthday_in(birth, day.year)
    assert age == day.year - birth.year - (1 if day < bday else 0)
    if birth.month == 2 and birth.day == 29 and not calendar.isleap(day.year):
        assert bday == dt.date(day.year, 3, 1)
    else:
        assert (bday.month, bday.day) == (birth.month, birth.day)
