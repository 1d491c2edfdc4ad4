"""Staff accounts and the authorisation decision on both backends (SEC-4 … SEC-8):
credentials, the 3-month password age at its exact boundary, revocation and grants counted from
their instants, the `number` right, refusals audited with nothing else changed."""
from __future__ import annotations

import datetime as dt

import pytest

from mynaemu.issuance.staff import passwords
from mynaemu.issuance.staff.accounts import Accounts, StaffInputError, StaffRefused, UnknownStaff
from mynaemu.issuance.staff.authorise import WRONG_CREDENTIALS, AuthRefused, authorise
from tests.support.pg import BACKENDS, open_store
from tests.support.staff import CHEAP

JST = dt.timezone(dt.timedelta(hours=9))
T0 = dt.datetime(2026, 11, 30, 10, 0, tzinfo=JST)       # month end: +3 months is clamped to 02-28
SECOND = dt.timedelta(seconds=1)
GOOD = "Good-passw0rd-here"


def jst(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=JST)


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    with open_store(request.param, tmp_path) as s:
        yield s


@pytest.fixture
def office(store):
    """An officer `sato` and a counter `tanaka`, made a year before T0, their passwords set at T0."""
    accounts = Accounts(store, terminal="t", hasher=CHEAP)
    start = T0 - dt.timedelta(days=365)
    first = accounts.init_officer("Sato", at=start)
    accounts.passwd("sato", GOOD, at=T0)
    accounts.add("sato", "tanaka", "counter", at=start)
    accounts.passwd("tanaka", "Counter-passw0rd-2", at=T0)
    return accounts, {"sato": GOOD, "tanaka": "Counter-passw0rd-2", "first": first}


def auth(store, who, password, operation, at):
    return authorise(store, operator=who, password=password, operation=operation, at=at, terminal="t")


def refused(store, who, password, operation, at) -> AuthRefused:
    before = dump(store)
    audit_before = len(store.audit_rows())
    with pytest.raises(AuthRefused) as info:
        auth(store, who, password, operation, at)
    assert dump(store) == before, "a refusal changed the store"
    rows = store.audit_rows()
    assert len(rows) == audit_before + 1                      # SEC-8: the attempt is audited
    assert (rows[-1]["operation"], rows[-1]["outcome"]) == (operation, "refused")
    assert rows[-1]["reason"].startswith(info.value.kind + ":")
    assert password is None or password not in str(rows[-1])   # never the password
    return info.value


def dump(store) -> dict:
    out = {}
    for table in ("staff", "staff_rights", "settings", "persons", "cards"):
        out[table] = sorted(tuple(r) for r in store.conn.execute(f"SELECT * FROM {table}").fetchall())
    return out


# --- init, add: the first officer and new accounts --------------------------------------------

def test_init_makes_one_officer_once(store):
    accounts = Accounts(store, terminal="t", hasher=CHEAP)
    assert not accounts.has_staff()
    password = accounts.init_officer("Sato", at=T0)
    assert len(password) == 20 and password.isalnum()
    assert auth(store, "sato", password, "staff add", T0) == "sato"   # lower case: one ID per person
    with pytest.raises(StaffRefused, match="already has staff"):
        accounts.init_officer("suzuki", at=T0)
    row = store.audit_rows()[0]
    assert (row["operator"], row["operation"], row["target"], row["outcome"]) == ("sato", "init", "sato", "ok")


def test_the_hash_is_argon2id_with_its_parameters_and_never_the_password(store):
    accounts = Accounts(store, terminal="t")                    # the real parameters
    password = accounts.init_officer("sato", at=T0)
    stored = store.conn.execute("SELECT password_hash FROM staff").fetchone()[0]
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and password not in stored
    assert passwords.verify_password(stored, password) and not passwords.verify_password(stored, password + "x")
    assert all(password not in str(r) for r in store.audit_rows())


def test_ids_are_unique_for_ever_and_checked(office, store):
    accounts, _ = office
    with pytest.raises(StaffRefused, match="exists already"):
        accounts.add("sato", "TANAKA", "viewer", at=T0)
    accounts.revoke("sato", "tanaka", at=T0)
    with pytest.raises(StaffRefused, match="exists already"):   # a revoked ID is never reissued
        accounts.add("sato", "tanaka", "viewer", at=T0)
    for bad in ("", "a" * 33, "-x", "田中", "a b", "x\x1b[2J"):
        with pytest.raises(StaffInputError):
            accounts.add("sato", bad, "viewer", at=T0)
    with pytest.raises(StaffInputError, match="unknown role"):
        accounts.add("sato", "kato", "number", at=T0)          # number is a right, never a role
    with pytest.raises(UnknownStaff):
        accounts.grant("sato", "nobody", "issuer", at=T0)


def test_the_last_officer_cannot_leave(office, store):
    accounts, _ = office
    with pytest.raises(StaffRefused, match="last security officer"):
        accounts.revoke("sato", "sato", at=T0)
    with pytest.raises(StaffRefused, match="last security officer"):
        accounts.withdraw("sato", "sato", "officer", at=T0)
    accounts.grant("sato", "tanaka", "officer", at=T0)
    accounts.revoke("sato", "sato", at=T0)                      # another officer remains


# --- credentials (SEC-4) -------------------------------------------------------------------------

def test_no_credentials_and_a_store_without_staff_are_refused(store):
    assert refused(store, None, None, "status", T0).kind == "credentials"
    assert refused(store, "sato", None, "status", T0).kind == "credentials"
    exc = refused(store, "sato", "whatever-1", "status", T0)
    assert exc.kind == "no-staff" and "issue init --officer" in str(exc)


def test_wrong_password_and_unknown_id_read_the_same(office, store):
    a = refused(store, "sato", "Wrong-passw0rd", "status", T0)
    b = refused(store, "nobody", GOOD, "status", T0)
    c = refused(store, "x\x1b[2J" * 20, GOOD, "status", T0)
    assert str(a) == str(b) == str(c) == WRONG_CREDENTIALS
    assert {a.kind, b.kind, c.kind} == {"credentials"}
    actors = [r["operator"] for r in store.audit_rows()[-3:]]
    assert actors == ["sato", "nobody", "(invalid)"]             # a malformed ID is not echoed


def test_the_first_password_stops_working_once_changed(office, store):
    _, pw = office
    refused(store, "sato", pw["first"], "status", T0)
    assert auth(store, "sato", GOOD, "status", T0) == "sato"


# --- SEC-5: the password's age at its exact boundary --------------------------------------------

def test_expires_at_is_three_calendar_months_in_jst_clamped_to_the_month_end():
    assert passwords.expires_at(T0) == jst(2027, 2, 28, 10, 0)
    assert passwords.expires_at(jst(2027, 11, 30, 10, 0)) == jst(2028, 2, 29, 10, 0)     # leap year
    assert passwords.expires_at(jst(2026, 5, 31, 8, 0)) == jst(2026, 8, 31, 8, 0)
    assert passwords.expires_at(jst(2026, 1, 15, 0, 0)) == jst(2026, 4, 15, 0, 0)
    # the JST calendar day counts, whatever offset the instant was given in
    utc = dt.datetime(2026, 11, 30, 15, 30, tzinfo=dt.timezone.utc)                 # 12-01 00:30 JST
    assert passwords.expires_at(utc) == jst(2027, 3, 1, 0, 30)


def test_ageing_boundary_both_sides_and_passwd_still_allowed(office, store):
    accounts, _ = office
    limit = jst(2027, 2, 28, 10, 0)
    assert auth(store, "sato", GOOD, "staff list", limit - SECOND) == "sato"
    exc = refused(store, "sato", GOOD, "staff list", limit)
    assert exc.kind == "aged" and "staff passwd" in str(exc) and "SEC-5" in str(exc)
    refused(store, "sato", GOOD, "status", limit + dt.timedelta(days=400))
    assert auth(store, "sato", GOOD, "staff passwd", limit) == "sato"   # the one command an aged password runs
    accounts.passwd("sato", "Newer-passw0rd-1", at=limit)
    assert auth(store, "sato", "Newer-passw0rd-1", "staff list", limit) == "sato"
    assert auth(store, "sato", "Newer-passw0rd-1", "staff list", jst(2027, 5, 28, 10, 0) - SECOND) == "sato"
    assert refused(store, "sato", "Newer-passw0rd-1", "staff list", jst(2027, 5, 28, 10, 0)).kind == "aged"


def test_a_step_dated_before_the_password_was_set_is_not_refused_for_age(office, store):
    assert auth(store, "sato", GOOD, "staff list", T0 - dt.timedelta(days=200)) == "sato"


# --- SEC-7 revocation, SEC-6 grants: counted from their instants --------------------------------

def test_revocation_counts_from_its_instant(office, store):
    accounts, pw = office
    revoked_at = jst(2026, 12, 15, 17, 0)
    accounts.revoke("sato", "tanaka", at=revoked_at)
    assert auth(store, "tanaka", pw["tanaka"], "apply", revoked_at - SECOND) == "tanaka"
    exc = refused(store, "tanaka", pw["tanaka"], "apply", revoked_at)
    assert exc.kind == "revoked" and "2026-12-15T17:00:00+09:00" in str(exc)
    assert refused(store, "tanaka", pw["tanaka"], "status", revoked_at + dt.timedelta(days=1)).kind == "revoked"
    with pytest.raises(StaffRefused, match="revoked already"):
        accounts.revoke("sato", "tanaka", at=revoked_at)
    with pytest.raises(StaffRefused, match="revoked"):
        accounts.grant("sato", "tanaka", "viewer", at=revoked_at)


def test_grants_and_withdrawals_count_from_their_instants(office, store):
    accounts, pw = office
    granted = jst(2026, 12, 1, 9, 0)
    accounts.grant("sato", "tanaka", "issuer", at=granted)
    exc = refused(store, "tanaka", pw["tanaka"], "generate", granted - SECOND)
    assert exc.kind == "role" and "issuer" in str(exc)
    assert auth(store, "tanaka", pw["tanaka"], "generate", granted) == "tanaka"
    withdrawn = jst(2026, 12, 20, 9, 0)
    accounts.withdraw("sato", "tanaka", "issuer", at=withdrawn)
    assert auth(store, "tanaka", pw["tanaka"], "generate", withdrawn - SECOND) == "tanaka"
    assert refused(store, "tanaka", pw["tanaka"], "generate", withdrawn).kind == "role"
    assert auth(store, "tanaka", pw["tanaka"], "apply", withdrawn) == "tanaka"   # the counter role stays
    with pytest.raises(StaffRefused, match="does not hold"):
        accounts.withdraw("sato", "tanaka", "issuer", at=withdrawn)
    ops = [(r["operation"], r["target"], r["reason"]) for r in store.audit_rows() if r["outcome"] == "ok"]
    assert ("staff grant", "tanaka", "right issuer") in ops
    assert ("staff revoke", "tanaka", "right issuer withdrawn (SEC-7)") in ops


def test_the_number_right_is_needed_for_the_individual_number_in_full(office, store):
    accounts, pw = office
    assert auth(store, "tanaka", pw["tanaka"], "status", T0) == "tanaka"
    exc = refused(store, "tanaka", pw["tanaka"], "status --reveal", T0)
    assert exc.kind == "number" and "SEC-1" in str(exc)
    accounts.grant("sato", "tanaka", "number", at=T0)
    assert auth(store, "tanaka", pw["tanaka"], "status --reveal", T0) == "tanaka"
    with pytest.raises(StaffRefused, match="holds number already"):
        accounts.grant("sato", "tanaka", "number", at=T0)


# --- one's own password ------------------------------------------------------------------------

@pytest.mark.parametrize("new,needle", [
    ("short-1A", "12 to 128"), ("x" * 129, "12 to 128"), ("tanaka-passw0rd", "staff ID"),
    ("alllowercaseletters", "two of"), ("Tab\tinside-passw0rd", "printable"), (" Leading-passw0rd", "white space"),
])
def test_new_passwords_follow_the_rules(office, store, new, needle):
    accounts, _ = office
    before = dump(store)
    with pytest.raises(StaffInputError, match=needle):
        accounts.passwd("tanaka", new, at=T0)
    assert dump(store) == before


def test_the_new_password_is_not_the_current_one(office, store):
    accounts, _ = office
    with pytest.raises(StaffInputError, match="current one"):
        accounts.passwd("sato", GOOD, at=T0)


def test_list_shows_rights_at_the_instant_and_the_password_expiry(office, store):
    accounts, _ = office
    accounts.grant("sato", "tanaka", "number", at=jst(2027, 1, 1))
    views = {v.id: v for v in accounts.list(jst(2026, 12, 31))}
    assert views["tanaka"].rights == ("counter",)
    assert {v.id: v for v in accounts.list(jst(2027, 1, 1))}["tanaka"].rights == ("counter", "number")
    assert views["sato"].password_expires_at == "2027-02-28T01:00:00+00:00"
