"""`mynaemu issue init` / `issue staff …` and the credentials of every `issue` command (issue 13).

The rights table vectors/staff/rights.csv is driven cell by cell through the CLI: for each
(operation, role) an account holding only that role runs the operation. A denied cell exits 5
with one line, leaves one refused audit record naming the account and the operation, and changes
nothing else in the store; an allowed cell is not refused for rights (the step then fails or
succeeds on its own terms: the arguments name an unknown card where that keeps it cheap)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mynaemu.issuance.staff.rights import NUMBER, ROLES, TABLE
from mynaemu.issuance.store import make_form_id
from mynaemu.tools.cli import main
from tests.issuance.staff.test_rights_table import ROWS
from tests.support.staff import PASSWORD, staff_account
from tests.support.store_rows import dump, last_audit

UNKNOWN = make_form_id()
PERSON = ["--name", "見本\u3000花子", "--birth", "1990-04-01", "--sex", "2", "--address", "東京都清瀬市試験町１丁目"]


def argv(operation: str, tmp) -> list[str]:
    """Arguments that reach the operation's own checks once authorised."""
    card = tmp / "not-a-card.json"
    card.write_text("{}")
    out = tmp / "out.json"
    return {
        "apply": ["apply", *PERSON, "--at", "2026-05-01"],
        "receive": ["receive", UNKNOWN], "deliver": ["deliver", UNKNOWN, "--auth-pin", "1234", "--kenhojo-pin",
                                                     "1234", "-o", str(out)],
        "resume": ["resume", UNKNOWN], "move": ["move", UNKNOWN, "--address", "東京都"],
        "renew": ["renew", UNKNOWN], "reissue": ["reissue", UNKNOWN],
        "abolish": ["abolish", UNKNOWN, "--reason", "other"], "collect": ["collect", UNKNOWN],
        "destroy": ["destroy", UNKNOWN], "revoke": ["revoke", UNKNOWN, "--reason", "death"],
        "generate": ["generate", UNKNOWN], "write-card": ["write-card", UNKNOWN, "--card", str(card)],
        "pin-reset": ["pin-reset", UNKNOWN, "--card", str(card), "--pin", "auth", "--new-pin", "4321"],
        "crl": ["crl", "--ca", "auth", "--at", "1950-01-02"], "persona": ["persona", "no-such", "-o", str(out)],
        "suspend": ["suspend", UNKNOWN], "status": ["status", UNKNOWN], "status --reveal": ["status", UNKNOWN, "--reveal"],
        "audit": ["audit", UNKNOWN], "audit-purge": ["audit-purge", "--before", "2000-01-01", "--dry-run"],
        "search": ["search", "--name", "見本　誰", "--birth", "1990-01-01"],
        "staff add": ["staff", "add", f"new-{len(list(tmp.iterdir()))}-{make_form_id()[:6].lower()}", "--role", "viewer"],
        "staff grant": ["staff", "grant", "nobody", "viewer"], "staff revoke": ["staff", "revoke", "nobody"],
        "staff list": ["staff", "list"], "staff rights": ["staff", "rights"],
        "staff passwd": ["staff", "passwd", "--new-password", "short"],
        "kiosk-history": ["kiosk-history", "--municipality", "13221"],
    }[operation]


# operations in the table whose command another part of issue 13 adds (none left)
PLANNED = set()


def commands_of_issue() -> set[str]:
    import click

    from mynaemu.tools.cli.issue import issue

    names = set()
    with click.Context(issue) as ctx:
        for name in issue.list_commands(ctx):       # the lazy subcommands too (groups.py)
            command = issue.get_command(ctx, name)
            if isinstance(command, click.Group):
                names |= {f"{name} {sub}" for sub in command.list_commands(ctx)}
            else:
                names.add(name)
    return names


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    """One store: the officer r-officer (its first account) and one account per other role, and
    r-<role>-n holding the role and the number right."""
    home = tmp_path_factory.mktemp("rights")
    staff_account(home, staff_id="r-officer", rights=["officer"])
    for role in ROLES[1:]:
        staff_account(home, staff_id=f"r-{role}", rights=[role])
    for role in ROLES:
        staff_account(home, staff_id=f"r-{role}-n", rights=[role, NUMBER])
    return home


def run(home, who, args, password=PASSWORD, input=None):
    env = {"MYNAEMU_HOME": str(home), "MYNAEMU_OPERATOR": who, "MYNAEMU_PASSWORD": password,
           "MYNAEMU_DB": None, "MYNAEMU_TERMINAL": None}
    return CliRunner().invoke(main, ["issue", *args], env=env, input=input, catch_exceptions=False)


def test_every_issue_command_has_a_row_and_every_row_a_command():
    commands = commands_of_issue() - {"init", "ocsp-serve"}
    rows = {row["operation"] for row in ROWS} - {"status --reveal"}
    assert commands - rows == set()
    assert rows - commands == PLANNED


CELLS = [(row["operation"], role, row[role]) for row in ROWS for role in ROLES
         if row["operation"] not in PLANNED]


@pytest.mark.parametrize("operation,role,cell", CELLS, ids=[f"{o}|{r}" for o, r, _ in CELLS])
def test_cell_through_the_cli(office, tmp_path, operation, role, cell):
    who = f"r-{role}"
    before = dump(office)
    result = run(office, who, argv(operation, tmp_path))
    if cell == "yes":
        assert result.exit_code != 5, (result.exit_code, result.stderr)
        return
    assert result.exit_code == 5, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ("holds no role" in lines[0] if cell == "-" else "lacks the right number" in lines[0])
    after = dump(office)
    assert len(after["audit"]) == len(before["audit"]) + 1
    assert {k: v for k, v in after.items() if not k.startswith("audit")} == {k: v for k, v in before.items() if not k.startswith("audit")}
    record = last_audit(office)
    assert (record["operator"], record["operation"], record["outcome"]) == (who, operation, "refused")
    if cell == NUMBER:    # with the number right as well, the same role may
        again = run(office, f"r-{role}-n", argv(operation, tmp_path))
        assert again.exit_code != 5, again.stderr


# --- init -------------------------------------------------------------------------------------

def test_init_prints_the_password_once_and_refuses_a_second_time(tmp_path):
    home = tmp_path / "home"
    first = CliRunner().invoke(main, ["issue", "--home", str(home), "init", "--officer", "Sato", "--at", "2026-10-01",
                                      "--json"], env={"MYNAEMU_PASSWORD": None})
    assert first.exit_code == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["id"] == "sato" and doc["role"] == "officer" and len(doc["password"]) == 20
    again = CliRunner().invoke(main, ["issue", "--home", str(home), "init", "--officer", "suzuki"])
    assert again.exit_code == 1 and "already has staff" in again.stderr
    assert doc["password"] not in json.dumps(dump(home), default=str)      # stored only as a hash
    listing = run(home, "sato", ["staff", "list", "--json", "--at", "2026-10-02"], password=doc["password"])
    assert listing.exit_code == 0, listing.stderr
    assert [(v["id"], v["rights"]) for v in json.loads(listing.stdout)] == [("sato", ["officer"])]


def test_a_store_with_data_but_no_staff_is_migrated_by_init(tmp_path):
    """A store made before accounts (its data written straight through the workflow) refuses
    every issue command until `issue init` makes its first officer; its data stays."""
    import datetime as dt

    from mynaemu.issuance.lifecycle.workflow import Workflow
    from mynaemu.issuance.store import Store

    home = tmp_path / "home"
    with Store.open(home) as store:
        app_id = Workflow(store, operator="before", terminal="t").apply(
            name="見本\u3000花子", birth=dt.date(1990, 4, 1), sex="2", address="東京都",
            at=dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc))
    refused = run(home, "sato", ["status", app_id, "--at", "2026-05-02"], password="anything-1A")
    assert refused.exit_code == 5 and "issue init --officer" in refused.stderr
    init = CliRunner().invoke(main, ["issue", "--home", str(home), "init", "--officer", "sato", "--at", "2026-05-01",
                                     "--json"])
    password = json.loads(init.stdout)["password"]
    assert run(home, "sato", ["staff", "add", "tanaka", "--role", "viewer", "--at", "2026-05-01"],
               password=password).exit_code == 0
    status = run(home, "sato", ["status", app_id, "--at", "2026-05-02", "--json"], password=password)
    assert status.exit_code == 0 and json.loads(status.stdout)["id"] == app_id


# --- credentials --------------------------------------------------------------------------------

@pytest.fixture
def small(tmp_path):
    home = tmp_path / "home"
    staff_account(home, staff_id="sato", rights=["officer", "counter"])
    return home


def test_no_wrong_or_unknown_credentials_exit_5_with_one_line(small):
    cases = [({"MYNAEMU_OPERATOR": None, "MYNAEMU_PASSWORD": PASSWORD}, "no credentials"),
             ({"MYNAEMU_OPERATOR": "sato", "MYNAEMU_PASSWORD": None}, "no credentials"),
             ({"MYNAEMU_OPERATOR": "sato", "MYNAEMU_PASSWORD": "Wrong-passw0rd"}, "unknown staff ID or wrong password"),
             ({"MYNAEMU_OPERATOR": "ghost", "MYNAEMU_PASSWORD": PASSWORD}, "unknown staff ID or wrong password")]
    for env, needle in cases:
        before = dump(small)
        result = CliRunner().invoke(main, ["issue", "apply", *PERSON, "--at", "2026-05-01"],
                                    env={"MYNAEMU_HOME": str(small), **env})
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 5 and len(lines) == 1 and needle in lines[0], (env, result.stderr)
        assert result.stdout == ""
        after = dump(small)
        assert after["persons"] == before["persons"] and len(after["audit"]) == len(before["audit"]) + 1
        assert PASSWORD not in str(after["audit"][-1])


def test_the_operator_option_names_the_account_and_the_audit_records_it(small):
    result = CliRunner().invoke(main, ["issue", "apply", *PERSON, "--at", "2026-05-01", "--operator", "SATO", "--json"],
                                env={"MYNAEMU_HOME": str(small), "MYNAEMU_OPERATOR": "ghost",
                                     "MYNAEMU_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.stderr
    record = last_audit(small)
    assert (record["operator"], record["operation"], record["outcome"]) == ("sato", "apply", "ok")


def test_no_terminal_means_no_prompt(small):
    """Without MYNAEMU_PASSWORD and with stdin not a terminal (CI), nothing is read from stdin."""
    result = CliRunner().invoke(main, ["issue", "status", UNKNOWN], input=PASSWORD + "\n",
                                env={"MYNAEMU_HOME": str(small), "MYNAEMU_OPERATOR": "sato", "MYNAEMU_PASSWORD": None})
    assert result.exit_code == 5 and "no credentials" in result.stderr


def test_staff_commands_through_the_cli(small):
    add = run(small, "sato", ["staff", "add", "Tanaka", "--role", "callcentre", "--json", "--at", "2026-05-01"])
    assert add.exit_code == 0, add.stderr
    tanaka = json.loads(add.stdout)["password"]
    assert run(small, "sato", ["staff", "add", "tanaka", "--role", "viewer"]).exit_code == 1   # exists
    assert run(small, "sato", ["staff", "add", "bad id", "--role", "viewer"]).exit_code == 2
    assert run(small, "sato", ["staff", "grant", "tanaka", "wizard"]).exit_code == 2
    assert run(small, "sato", ["staff", "grant", "nobody", "viewer"]).exit_code == 3
    assert run(small, "sato", ["staff", "grant", "tanaka", "number", "--at", "2026-05-02"]).exit_code == 0
    listing = json.loads(run(small, "sato", ["staff", "list", "--json", "--at", "2026-05-02"]).stdout)
    assert {v["id"]: v["rights"] for v in listing}["tanaka"] == ["callcentre", "number"]
    # tanaka changes the first password, read twice from stdin
    changed = run(small, "tanaka", ["staff", "passwd", "--at", "2026-05-03"], password=tanaka,
                  input="Callcentre-passw0rd\nCallcentre-passw0rd\n")
    assert changed.exit_code == 0, changed.stderr
    assert run(small, "tanaka", ["status", UNKNOWN, "--at", "2026-05-03"], password=tanaka).exit_code == 5
    assert run(small, "tanaka", ["status", UNKNOWN, "--at", "2026-05-03"],
               password="Callcentre-passw0rd").exit_code == 3
    differ = run(small, "tanaka", ["staff", "passwd", "--at", "2026-05-03"], password="Callcentre-passw0rd",
                 input="Another-passw0rd-1\nAnother-passw0rd-2\n")
    assert differ.exit_code == 2 and "differ" in differ.stderr
    # the right withdrawn, then the ID revoked, each from its --at
    assert run(small, "sato", ["staff", "revoke", "tanaka", "number", "--at", "2026-05-04"]).exit_code == 0
    reveal = run(small, "tanaka", ["status", UNKNOWN, "--reveal", "--at", "2026-05-04"], password="Callcentre-passw0rd")
    assert reveal.exit_code == 5 and "lacks the right number" in reveal.stderr
    assert run(small, "sato", ["staff", "revoke", "tanaka", "--at", "2026-05-05T09:00"]).exit_code == 0
    late = run(small, "tanaka", ["status", UNKNOWN, "--at", "2026-05-05T09:00"], password="Callcentre-passw0rd")
    assert late.exit_code == 5 and "was revoked at 2026-05-05T09:00:00+09:00" in late.stderr
    early = run(small, "tanaka", ["status", UNKNOWN, "--at", "2026-05-05T08:59:59"], password="Callcentre-passw0rd")
    assert early.exit_code == 3
    # the audit names every staff action
    ops = [(r[5], r[6], r[8]) for r in dump(small)["audit"]]   # operation, target, outcome
    for op in ("staff add", "staff grant", "staff passwd", "staff revoke"):
        assert (op, "tanaka", "ok") in ops


def test_the_rights_table_the_cli_prints_is_the_csv(small):
    result = run(small, "sato", ["staff", "rights", "--json"])
    assert result.exit_code == 0
    printed = {row["operation"]: row for row in json.loads(result.stdout)}
    assert printed == {row["operation"]: {"operation": row["operation"], **{r: row[r] for r in ROLES}} for row in ROWS}
    text = run(small, "sato", ["staff", "rights"]).stdout.splitlines()
    assert text[0].split() == ["operation", *ROLES] and len(text) == len(TABLE) + 1


def test_an_aged_password_through_the_cli_at_the_exact_boundary_then_passwd(tmp_path):
    """Set 2026-11-30 10:00 JST: works until 2027-02-28 09:59:59, refused from 10:00:00 (SEC-5,
    3 calendar months clamped to February's end), except `staff passwd`."""
    home = tmp_path / "home"
    init = CliRunner().invoke(main, ["issue", "--home", str(home), "init", "--officer", "sato",
                                     "--at", "2026-11-30T10:00", "--json"])
    password = json.loads(init.stdout)["password"]
    ok = run(home, "sato", ["staff", "list", "--at", "2027-02-28T09:59:59"], password=password)
    assert ok.exit_code == 0, ok.stderr
    aged = run(home, "sato", ["staff", "list", "--at", "2027-02-28T10:00:00"], password=password)
    assert aged.exit_code == 5 and "unchanged for 3 months (SEC-5)" in aged.stderr
    assert last_audit(home)["reason"].startswith("aged:")
    changed = run(home, "sato", ["staff", "passwd", "--new-password", "Renewed-passw0rd", "--at", "2027-02-28T10:00",
                                 "--allow-future"], password=password)
    assert changed.exit_code == 0, changed.stderr
    assert run(home, "sato", ["staff", "list", "--at", "2027-02-28T10:00:00"],
               password="Renewed-passw0rd").exit_code == 0


def test_help_names_exit_5():
    assert "5  authentication or authorisation refused" in CliRunner().invoke(main, ["issue", "--help"]).stdout


def test_the_myna_office_fixture_gives_issue_commands_credentials(myna_office):
    """The pytest plugin's office (tools/harness/pytest_plugin.py): its .env logs in."""
    path = myna_office.issue_card()
    from mynaemu.card.image import CardImage

    app_id = CardImage.load(path).meta["application_id"]
    result = CliRunner().invoke(main, ["issue", "status", app_id, "--json"], env=myna_office.env)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "active"
    assert myna_office.env["MYNAEMU_OPERATOR"] == "myna-office"
