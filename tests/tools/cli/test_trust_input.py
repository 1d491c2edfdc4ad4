"""Trust boundaries, input validation (docs/input-limits.md): every bad value found at the CLI
and domain edges is one line on stderr, the documented exit code, and no change to the store;
an unexpected failure inside a workflow step is audited and becomes one line, exit 1."""
import datetime as dt
import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
import unicodedata

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mynaemu.issuance import validate
from mynaemu.issuance.lifecycle import workflow as workflow_module
from mynaemu.issuance.pki.ca import default_test_pki
from mynaemu.issuance.identity import ERAS, Identity
from mynaemu.issuance.personalise import KEYS_PER_CARD
from mynaemu.issuance.store import DB_NAME, Store
from mynaemu.issuance.lifecycle.workflow import BadInput, Basic4, Workflow
from mynaemu.tools.cli import main
from tests.support.store_rows import dump   # every row of every table: the store's whole state

JST = dt.timezone(dt.timedelta(hours=9))
PERSON = ["--sex", "1", "--birth", "1990-04-02"]
ADDRESS = "東京都清瀬市試験町１丁目"
# A real-shaped long address with 方書 (building and room): must be accepted.
LONG_ADDRESS = ("北海道札幌市中央区北一条西二十丁目一番二十三号　サンプルグランドレジデンス札幌円山公園"
                "ステーションフロントタワー東棟　二十四階　２４０１号室（見本ビル管理組合気付）")


# ---------------------------------------------------------------------------------------------
# one store with a card in each state the table needs, copied per test
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def template(tmp_path_factory):
    default_test_pki()
    home = tmp_path_factory.mktemp("trust-template")
    pool = [rsa.generate_private_key(65537, 2048) for _ in range(KEYS_PER_CARD)]
    cycle = itertools.cycle(pool)
    with Store.open(home) as store:
        wf = Workflow(store, operator="op", terminal="t", key_factory=lambda: next(cycle))
        at = dt.datetime(2026, 5, 1, 10, tzinfo=JST)
        applied = wf.apply(name="申請\u3000太郎", birth=dt.date(1990, 4, 2), sex="1", address=ADDRESS, at=at)
        waiting = wf.apply(name="交付\u3000次郎", birth=dt.date(1985, 1, 2), sex="1", address=ADDRESS, at=at)
        wf.generate(waiting, at=at + dt.timedelta(days=1))
        active = wf.apply(name="有効\u3000花子", birth=dt.date(1980, 1, 15), sex="2", address=ADDRESS, at=at)
        wf.generate(active, at=at + dt.timedelta(days=1))
        wf.deliver(active, at=at + dt.timedelta(days=2), pins={"auth": "1234", "sign": "ABC123", "kenhojo": "1234"},
                   identity_check="運転免許証", output=home / "active.card.json")
    return home, {"applied": applied, "waiting": waiting, "active": active}


@pytest.fixture
def office(template, tmp_path, monkeypatch, issue_staff):
    src, ids = template
    home = tmp_path / "home"
    shutil.copytree(src, home)
    monkeypatch.setenv("MYNAEMU_HOME", str(home))
    monkeypatch.delenv("MYNAEMU_OPERATOR", raising=False)
    issue_staff(home)  # every issue command authenticates (issue 13): op-cli, MYNAEMU_OPERATOR/_PASSWORD
    monkeypatch.delenv("MYNAEMU_TERMINAL", raising=False)
    monkeypatch.delenv("MYNAEMU_DB", raising=False)
    monkeypatch.delenv("MYNAEMU_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    return home, ids


def invoke(args, env=None):
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def assert_one_line(result, code, needle):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1, result.stderr
    assert needle in lines[0], lines[0]
    # nothing echoed raw: every character is printable text or a plain space
    assert all(ch.isprintable() or unicodedata.category(ch) == "Zs" for ch in lines[0]), repr(lines[0])
    return lines[0]


BIG = "あ" * 100_000
OUT_MISSING = "/nonexistent-h9e-folder/out.file"

# (case id, argv builder(ids) -> list, env, expected exit code, text the one line must contain)
CASES = [
    # --at out of range: year 1, year 9999, a time-zone shift that would overflow either end
    ("at-year-1", lambda i: ["issue", "receive", i["applied"], "--at", "0001-01-01"], None, 2, "outside 1950-01-01"),
    ("at-9999", lambda i: ["issue", "receive", i["applied"], "--at", "9999-12-31"], None, 2, "outside"),
    ("at-tz-overflow-high", lambda i: ["issue", "status", i["active"], "--at", "9999-12-31T23:59:59-12:00"],
     None, 2, "outside"),
    ("at-tz-overflow-low", lambda i: ["issue", "status", i["active"], "--at", "0001-01-01T00:00:00+14:00"],
     None, 2, "outside"),
    ("at-2050", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", *PERSON, "--address", ADDRESS,
                           "--at", "2050-01-01T09:00"], None, 2, "2049-12-31T23:59:59Z"),
    ("at-1949", lambda i: ["issue", "status", i["active"], "--at", "1949-12-31T23:59:59Z"], None, 2, "1950-01-01"),
    ("at-garbage", lambda i: ["issue", "status", i["active"], "--at", "yesterday\x1b[2J"], None, 2,
     "not an ISO 8601"),
    # CRL past the TEST CAs' end (2049, UTCTime): refused before the number is spent
    ("crl-2051", lambda i: ["issue", "crl", "--ca", "auth", "--at", "2051-01-01"], None, 2, "UTCTime"),
    ("crl-before-ca", lambda i: ["issue", "crl", "--ca", "auth", "--at", "2014-06-01"], None, 2,
     "outside the auth CA's validity"),
    ("crl-next-update-2050", lambda i: ["issue", "crl", "--ca", "sign", "--at", "2049-12-31T23:00"], None, 2,
     "nextUpdate"),
    # operator / terminal: one line, non-empty, bounded
    ("operator-newline", lambda i: ["issue", "status", i["active"], "--operator", "alice\n2026-01-01 root@x ok"],
     None, 2, "control character"),
    ("operator-empty", lambda i: ["issue", "status", i["active"], "--operator", ""], None, 2, "non-empty"),
    ("operator-long", lambda i: ["issue", "status", i["active"], "--operator", "o" * 65], None, 2, "limit is 64"),
    ("terminal-esc", lambda i: ["issue", "receive", i["applied"], "--terminal", "t\x1b]0;pwned\x07"], None, 2,
     "control character"),
    ("terminal-env-newline", lambda i: ["issue", "receive", i["applied"]], {"MYNAEMU_TERMINAL": "t1\nt2"}, 2,
     "control character"),
    ("operator-bidi", lambda i: ["issue", "status", i["active"], "--operator", "op\u202eevil"], None, 2,
     "format character"),
    # ids that are not UTF-8 (argv surrogate escapes) or absurdly long
    ("id-not-utf8", lambda i: ["issue", "status", "\udcff\udcfe"], None, 2, "not UTF-8"),
    ("id-not-utf8-16", lambda i: ["issue", "receive", "\udcff\udcfe" + "A" * 14], None, 2, "not UTF-8"),
    ("id-100k", lambda i: ["issue", "abolish", "A" * 100_000, "--reason", "other"], None, 2, "too long"),
    ("id-control", lambda i: ["issue", "collect", "ABCD\nEFGH12345678"], None, 2, "control character"),
    # --lease for batch generation
    ("lease-nan", lambda i: ["issue", "generate", "--workers", "1", "--lease", "nan"], None, 2, "finite"),
    ("lease-inf", lambda i: ["issue", "generate", "--workers", "1", "--lease", "inf"], None, 2, "finite"),
    ("lease-negative", lambda i: ["issue", "generate", "--workers", "1", "--lease", "-5"], None, 2, "between"),
    # names and addresses: control, bidi, zero-width, format, private-use, huge
    *[(f"name-{tag}", (lambda ch: lambda i: ["issue", "apply", "--name", f"見本{ch}一郎", *PERSON,
                                             "--address", ADDRESS, "--at", "2026-05-02"])(ch), None, 2, what)
      for tag, ch, what in (
          ("esc", "\x1b[2J", "control character"), ("nul", "\x00", "control character"),
          ("newline", "\n", "control character"), ("del", "\x7f", "control character"),
          ("c1", "\x85", "control character"),
          ("rlo", "\u202e", "format character"), ("lre", "\u202a", "format character"),
          ("rli", "\u2067", "format character"), ("pdi", "\u2069", "format character"),
          ("zwsp", "\u200b", "format character"), ("zwj", "\u200d", "format character"),
          ("bom", "\ufeff", "format character"), ("shy", "\u00ad", "format character"),
          ("line-sep", "\u2028", "line separator"), ("private-use", "\ue000", "private-use"),
          ("unassigned", "\U000e0fff", "unassigned"), ("surrogate", "\udc80", "not UTF-8"))],
    ("name-100k", lambda i: ["issue", "apply", "--name", BIG, *PERSON, "--address", ADDRESS], None, 2,
     "the limit is 100"),
    ("name-101", lambda i: ["issue", "apply", "--name", "名" * 101, *PERSON, "--address", ADDRESS], None, 2,
     "101 characters; the limit is 100"),
    ("name-spaces", lambda i: ["issue", "apply", "--name", " 見本", *PERSON, "--address", ADDRESS], None, 2,
     "start or end"),
    ("address-100k", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", *PERSON, "--address", BIG], None, 2,
     "the limit is 400"),
    ("address-401", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", *PERSON, "--address", "番" * 401],
     None, 2, "the limit is 400"),
    ("address-bidi", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", *PERSON,
                                "--address", "東京都\u2066清瀬市\u2069"], None, 2, "format character"),
    ("kana-201", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", *PERSON, "--address", ADDRESS,
                            "--name-kana", "か" * 201], None, 2, "the limit is 200"),
    ("kana-newline", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", *PERSON, "--address", ADDRESS,
                                "--name-kana", "みほん\nいちろう"], None, 2, "control character"),
    ("alt-flags-bad", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", *PERSON, "--address", ADDRESS,
                                 "--name-alt", "01x\x1b"], None, 2, "0/1 flag"),
    ("move-address-control", lambda i: ["issue", "move", i["active"], "--address", "東京都\r\n新住所",
                                        "--at", "2026-06-01"], None, 2, "control character"),
    ("move-address-huge", lambda i: ["issue", "move", i["active"], "--address", BIG, "--at", "2026-06-01"],
     None, 2, "the limit is 400"),
    ("caller-name-bidi", lambda i: ["issue", "suspend", i["active"], "--caller-name", "有効\u202e花子",
                                    "--caller-birth", "1980-01-15", "--caller-sex", "2",
                                    "--caller-address", ADDRESS, "--at", "2026-06-01"], None, 2, "format character"),
    ("caller-address-long", lambda i: ["issue", "suspend", i["active"], "--caller-name", "有効\u3000花子",
                                       "--caller-birth", "1980-01-15", "--caller-sex", "2",
                                       "--caller-address", "所" * 401, "--at", "2026-06-01"], None, 2,
     "the limit is 400"),
    ("caller-birth-pre-meiji", lambda i: ["issue", "suspend", i["active"], "--caller-name", "有効\u3000花子",
                                          "--caller-birth", "1850-01-15", "--caller-sex", "2",
                                          "--caller-address", ADDRESS, "--at", "2026-06-01"], None, 2, "明治"),
    ("identity-check-newline", lambda i: ["issue", "deliver", i["waiting"], "--auth-pin", "1234", "--sign-pin",
                                          "ABC123", "--kenhojo-pin", "1234", "-o", "card.json",
                                          "--identity-check", "運転免許証\nforged", "--at", "2026-05-10"],
     None, 2, "control character"),
    ("identity-check-long", lambda i: ["issue", "resume", i["active"], "--identity-check", "確" * 201,
                                       "--at", "2026-06-01"], None, 2, "the limit is 200"),
    ("notice-bidi", lambda i: ["issue", "deliver", i["waiting"], "--auth-pin", "1234", "--kenhojo-pin", "1234",
                               "-o", "card.json", "--proxy", "relative", "--proxy-reason", "homebound-alone",
                               "--notice", "N\u202e1", "--at", "2026-05-10"], None, 2, "format character"),
    ("proxy-doc-echo", lambda i: ["issue", "deliver", i["waiting"], "--auth-pin", "1234", "--kenhojo-pin", "1234",
                                  "-o", "card.json", "--proxy", "relative", "--proxy-reason", "homebound-alone",
                                  "--proxy-doc", "x\x1b[31m", "--at", "2026-05-10"], None, 2, "unknown document"),
    ("persona-name-echo", lambda i: ["issue", "persona", "ex\x1b[2Jpired", "-o", "p.json"], None, 2,
     "unknown persona"),
    # birth dates: before 明治, or older than 130 on --at
    ("birth-pre-meiji", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", "--sex", "1",
                                   "--birth", "1868-01-24", "--address", ADDRESS, "--at", "2026-05-02"], None, 2,
     "before 明治 (1868-01-25)"),
    ("birth-year-1", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", "--sex", "1",
                                "--birth", "0001-01-01", "--address", ADDRESS], None, 2, "明治"),
    ("birth-age-131", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", "--sex", "1",
                                 "--birth", "1895-01-01", "--address", ADDRESS, "--at", "2026-05-02"], None, 2,
     "the limit is 130 years"),
    ("birth-future", lambda i: ["issue", "apply", "--name", "見本\u3000一郎", "--sex", "1",
                                "--birth", "2027-01-01", "--address", ADDRESS, "--at", "2026-05-02"], None, 2,
     "after"),
    # output folders that do not exist: found before anything runs
    ("deliver-o-missing", lambda i: ["issue", "deliver", i["waiting"], "--auth-pin", "1234", "--sign-pin",
                                     "ABC123", "--kenhojo-pin", "1234", "-o", OUT_MISSING, "--at", "2026-05-10"],
     None, 2, "no such directory"),
    ("crl-o-missing", lambda i: ["issue", "crl", "--ca", "auth", "-o", OUT_MISSING, "--at", "2026-06-01"], None, 2,
     "no such directory"),
    ("persona-o-missing", lambda i: ["issue", "persona", "expired", "-o", OUT_MISSING, "--at", "2026-06-01"],
     None, 2, "no such directory"),
    ("demo-o-missing", lambda i: ["demo", "-o", OUT_MISSING], None, 2, "no such directory"),
    ("demo-o-is-file", lambda i: ["demo", "-o", "afile/x.pdf"], None, 2, "not a directory"),
    ("kiosk-o-missing", lambda i: ["kiosk", "issue", "--card", "c.json", "--pin", "1234", "--document", "juminhyo",
                                   "-o", OUT_MISSING], None, 2, "no such directory"),
    ("card-create-o-missing", lambda i: ["card", "create", "--persona", "adult", "-o", OUT_MISSING], None, 2,
     "no such directory"),
    # kiosk option types
    ("kiosk-at-2060", lambda i: ["kiosk", "issue", "--card", "c.json", "--pin", "1234", "--document",
                                 "juminhyo", "-o", "x.pdf", "--at", "2060-01-01T10:00"], None, 2, "UTCTime"),
    ("kiosk-at-year-1", lambda i: ["kiosk", "issue", "--card", "c.json", "--pin", "1234", "--document",
                                   "juminhyo", "-o", "x.pdf", "--at", "0001-01-01"], None, 2, "outside"),
    ("kiosk-reader-control", lambda i: ["kiosk", "issue", "--reader", "Virtual\x1b[2J", "--pin", "1234",
                                        "--document", "juminhyo", "-o", "x.pdf"], None, 2, "control character"),
    ("kiosk-id-long", lambda i: ["kiosk", "issue", "--card", "c.json", "--pin", "1234", "--document", "juminhyo",
                                 "-o", "x.pdf", "--kiosk-id", "K" * 65], None, 2, "limit is 64"),
    ("kiosk-id-non-ascii", lambda i: ["kiosk", "issue", "--card", "c.json", "--pin", "1234", "--document",
                                      "juminhyo", "-o", "x.pdf", "--kiosk-id", "キオスク"], None, 2, "ASCII"),
    ("kiosk-enrol-pin", lambda i: ["kiosk", "enrol", "--card", "c.json", "--pin", "12a4"], None, 2, "4 digits"),
    ("issue-home-is-file", lambda i: ["issue", "--home", "/etc/passwd", "status", i["active"]], None, 2,
     "is a file"),
    ("main-bad-option", lambda i: ["--bogus\x1b[2J"], None, 2, "No such option"),
    ("kiosk-unknown-command", lambda i: ["kiosk", "bogus\x1b[2J"], None, 2, "No such command"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_code_and_store_unchanged(office, case):
    home, ids = office
    name, build, env, code, needle = case
    (home.parent / "afile").write_text("a file, not a folder")
    before = dump(home)
    result = invoke(build(ids), env=env)
    assert_one_line(result, code, needle)
    assert dump(home) == before, f"{name}: the store changed"
    assert not (home.parent / "card.json").exists()


def test_crl_number_not_spent_by_a_refused_crl_then_spent_by_a_good_one(office):
    home, _ = office
    settings_before = dict(dump(home)["settings"])
    # refused by the CRL window (nextUpdate past 2049), not by the --at type
    assert_one_line(invoke(["issue", "crl", "--ca", "auth", "--at", "2049-12-31T23:00"]), 2, "nextUpdate")
    assert dict(dump(home)["settings"]) == settings_before
    ok = invoke(["issue", "crl", "--ca", "auth", "--at", "2026-06-01", "--json"])
    assert ok.exit_code == 0, ok.stderr
    after = dict(dump(home)["settings"])
    assert after["crl_number_auth"] != settings_before.get("crl_number_auth")


def test_non_utf8_argv_bytes_through_a_real_process(office):
    """The bytes as a shell passes them: Python turns them into surrogate escapes."""
    home, _ = office
    before = dump(home)
    env = {**os.environ, "MYNAEMU_HOME": str(home)}
    for argv in ([b"status", b"\xff\xfe"], [b"apply", b"--name", b"\xe8\xa6\x8b\xff", b"--birth", b"1990-04-02",
                                           b"--sex", b"1", b"--address", "東京都".encode()]):
        proc = subprocess.run([sys.executable.encode(), b"-m", b"mynaemu.tools.cli", b"issue", *argv],
                              capture_output=True, env=env, timeout=120)
        lines = [line for line in proc.stderr.decode("utf-8").splitlines() if line.strip()]
        assert proc.returncode == 2, proc.stderr
        assert len(lines) == 1 and "not UTF-8" in lines[0], lines
    assert dump(home) == before


# ---------------------------------------------------------------------------------------------
# what must still be accepted
# ---------------------------------------------------------------------------------------------

def test_real_shaped_long_address_and_boundaries_are_accepted(office):
    home, _ = office
    assert len(LONG_ADDRESS) < validate.LIMITS["address"]
    result = invoke(["issue", "apply", "--name", "見本\u3000一郎", *PERSON, "--address", LONG_ADDRESS,
                     "--name-kana", "みほん　いちろう", "--at", "2026-05-02", "--json"])
    assert result.exit_code == 0, result.stderr
    app_id = result.stdout.strip().split('"')[3]
    status = invoke(["issue", "status", app_id, "--json", "--at", "2026-05-02"])
    assert LONG_ADDRESS in status.stdout
    # exactly at the limits: 100-character name, 400-character address, born on 明治's first day
    # and 130 on the day of the application
    at_limit = invoke(["issue", "apply", "--name", "名" * 100, "--sex", "2", "--birth", "1868-01-25",
                       "--address", "所" * 400, "--at", "1998-01-25"])
    assert at_limit.exit_code == 0, at_limit.stderr


def test_first_birth_is_the_first_era_day_the_card_encodes():
    assert validate.FIRST_BIRTH == min(start for _, start, _ in ERAS)
    with pytest.raises(ValueError, match="明治"):
        Identity(name="見本", address="東京都", birth=dt.date(1868, 1, 24), sex="1",
                 individual_number="123456789018", juminhyo_code="12345678901")


# ---------------------------------------------------------------------------------------------
# the domain is guarded the same way (Python API)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, needle", [
    ({"name": "見本\n一郎"}, "control character"),
    ({"address": "所" * 401}, "limit is 400"),
    ({"name_kana": "\u202e"}, "format character"),
    ({"birth": dt.date(1800, 1, 1)}, "明治"),
    ({"birth": dt.date(1890, 1, 1)}, "limit is 130"),
    ({"at": dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))}, "outside"),
    ({"at": dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-12)))}, "outside"),
    ({"city_romaji": "Kiyose\x1b"}, "control character"),
    ({"municipality_code": "1322１"}, "5 ASCII digits"),
])
def test_workflow_apply_refuses_what_the_cli_refuses(tmp_path, kwargs, needle):
    with Store.open(tmp_path) as store:
        wf = Workflow(store, operator="op", terminal="t")
        before = dump(tmp_path)
        args = {"name": "見本\u3000一郎", "birth": dt.date(1990, 4, 2), "sex": "1", "address": ADDRESS,
                "at": dt.datetime(2026, 5, 1, tzinfo=JST), **kwargs}
        with pytest.raises(BadInput, match=needle):
            wf.apply(**args)
        assert dump(tmp_path) == before


def test_workflow_refuses_bad_operator_and_caller_fields(tmp_path):
    with Store.open(tmp_path) as store:
        for operator in ("", "a\nb", "x" * 65, "\u202e"):
            with pytest.raises(BadInput):
                Workflow(store, operator=operator, terminal="t")
        with pytest.raises(BadInput, match="terminal"):
            Workflow(store, operator="op", terminal="t\r")
        wf = Workflow(store, operator="op", terminal="t")
        at = dt.datetime(2026, 5, 1, tzinfo=JST)
        with pytest.raises(BadInput, match="caller_name"):
            wf.suspend("A" * 16, at=at, caller=Basic4("見本\x00", dt.date(1990, 1, 1), "1", ADDRESS))
        with pytest.raises(BadInput, match="not UTF-8"):
            wf.receive("\udcff" * 16, at=at)
        with pytest.raises(BadInput, match="too long"):
            wf.receive("A" * 10_000, at=at)
        with pytest.raises(BadInput, match="control character"):
            wf.move("A" * 16, at=at, address="新\n住所")


# ---------------------------------------------------------------------------------------------
# item 10: an unexpected exception inside a step is audited, then one line and exit 1
# ---------------------------------------------------------------------------------------------

SECRET = "123456789018"


def _explode(*_a, **_k):
    raise RuntimeError(f"personalisation broke while holding 個人番号 {SECRET} and PIN 1234")


def test_unexpected_exception_in_a_step_is_audited_and_reraised(office, monkeypatch):
    home, ids = office
    monkeypatch.setattr(workflow_module, "personalise", _explode)
    with Store.open(home) as store:
        wf = Workflow(store, operator="op-9", terminal="counter-2")
        before = {k: v for k, v in dump(home).items() if not k.startswith("audit")}
        with pytest.raises(RuntimeError, match="personalisation broke"):
            wf.generate(ids["applied"], at=dt.datetime(2026, 5, 3, tzinfo=JST))
        last = store.audit_rows(ids["applied"])[-1]
    assert {k: last[k] for k in ("operation", "target", "operator", "terminal", "outcome", "reason")} == {
        "operation": "generate", "target": ids["applied"], "operator": "op-9", "terminal": "counter-2",
        "outcome": "error", "reason": "unexpected RuntimeError"}
    assert SECRET not in str(last) and "1234" not in str(last["reason"])
    # the step's own writes rolled back: only the audit grew
    assert {k: v for k, v in dump(home).items() if not k.startswith("audit")} == before


def test_unexpected_exception_is_one_line_exit_1_at_the_cli(office, monkeypatch):
    home, ids = office
    monkeypatch.setattr(workflow_module, "personalise", _explode)
    before = {k: v for k, v in dump(home).items() if not k.startswith("audit")}
    # with the holder's card: the rewrite personalises it (without the card nothing is personalised
    # any more once the card is handed over, cardwrite.py)
    result = invoke(["issue", "move", ids["active"], "--address", "東京都清瀬市新町２丁目", "--at", "2026-06-03",
                     "--operator", "op-cli", "--card", str(home / "active.card.json")])
    line = assert_one_line(result, 1, "internal error (RuntimeError)")
    assert SECRET not in line and "1234" not in line
    assert {k: v for k, v in dump(home).items() if not k.startswith("audit")} == before
    with Store.open(home) as store:
        last = store.audit_rows(ids["active"])[-1]
    assert (last["operator"], last["outcome"], last["reason"]) == ("op-cli", "error", "unexpected RuntimeError")


def test_mynaemu_debug_keeps_the_traceback(office, monkeypatch):
    home, ids = office
    monkeypatch.setattr(workflow_module, "personalise", _explode)
    monkeypatch.setenv("MYNAEMU_DEBUG", "1")
    with pytest.raises(RuntimeError, match="personalisation broke"):
        CliRunner().invoke(main, ["issue", "generate", ids["applied"], "--at", "2026-05-03"],
                           catch_exceptions=False)


def test_audit_listing_is_one_line_per_record_even_for_an_older_store(office):
    """Records written before these checks (or by hand) cannot forge lines in `issue audit`."""
    home, ids = office
    conn = sqlite3.connect(home / DB_NAME)
    with conn:
        conn.execute("UPDATE audit SET operator = ?, reason = ? WHERE id = (SELECT max(id) FROM audit)",
                     ("eve\n2026-01-01T00:00:00+00:00 admin@t generate X ok", "r\x1b[2J\u202e"))
    conn.close()
    rows = len(dump(home)["audit"])      # the records there before the read (which adds its own)
    result = invoke(["issue", "audit"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == rows
    assert all(ch.isprintable() or unicodedata.category(ch) == "Zs" for line in lines for ch in line)
    assert "eve\\u000a2026" in lines[-1] and "\\u202e" in lines[-1]


# ---------------------------------------------------------------------------------------------
# echo helpers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["a\x1b[31mb", "\u202eabc", "x" * 10_000, "\udcff", "a\nb\u2028c", "\ufeff"])
def test_shown_and_printable_line_never_carry_raw_control_characters(value):
    for out in (validate.shown(value), validate.printable_line(f"bad {value} here")):
        assert len(out) <= 1100
        assert all(ch.isprintable() or unicodedata.category(ch) == "Zs" for ch in out), repr(out)
        out.encode("utf-8")


# ---------------------------------------------------------------------------------------------
# hypothesis: any text as name/address is either accepted and read back unchanged, or BadInput
# ---------------------------------------------------------------------------------------------

NASTY = st.sampled_from(["\x00", "\n", "\r", "\x1b", "\x7f", "\x85", "\u200b", "\u200d", "\u202a", "\u202e",
                         "\u2066", "\u2069", "\u2028", "\u2029", "\ufeff", "\u00ad", "\ue000", "\udc80",
                         "\ud800", "\uffff", "\U000e0001", "\u3000", " ", "\t", "見", "本", "ｱ", "A", "１"])
TEXT = st.one_of(st.text(max_size=120), st.text(NASTY, max_size=40),
                 st.text(st.characters(exclude_categories=()), max_size=60),
                 st.text(st.sampled_from("東京都所番号"), min_size=395, max_size=405))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=TEXT, address=TEXT)
def test_any_text_as_name_or_address_round_trips_or_is_bad_input(tmp_path_factory, name, address):
    home = tmp_path_factory.mktemp("hyp")
    at = dt.datetime(2026, 5, 1, tzinfo=JST)
    with Store.open(home) as store:
        wf = Workflow(store, operator="op", terminal="t")
        try:
            app_id = wf.apply(name=name, birth=dt.date(1990, 4, 2), sex="1", address=address, at=at)
        except BadInput as exc:
            validate.printable_line(str(exc)).encode("utf-8")
            assert len(str(exc)) < 500  # the message never quotes the whole value
            assert store.application_ids(("applied",)) == []
            return
        holder = wf.status(app_id, at=at)["holder"]
    assert (holder["name"], holder["address"]) == (name, address)
    assert len(name) <= validate.LIMITS["name"] and len(address) <= validate.LIMITS["address"]
