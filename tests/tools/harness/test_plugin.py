"""The pytest plugin (entry point pytest11 `mynaemu`), used as a downstream project would use it.

Each test writes a small test suite into a temporary directory outside the repository (pytester)
and runs pytest on it in a subprocess: no conftest, no import of mynaemu in the suite's setup —
the fixtures come from the installed entry point alone.
"""
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]


def test_the_entry_point_is_installed():
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("mynaemu") == "mynaemu.tools.harness.pytest_plugin"


def test_loading_the_plugin_imports_nothing_of_mynaemu():
    code = ("import sys, mynaemu.tools.harness.pytest_plugin as p; "
            "heavy = [m for m in sys.modules if m.startswith(('mynaemu.card', 'mynaemu.issuance', 'cryptography'))"
            " or m in ('mynaemu.tools.terminal.client', 'mynaemu.tools.terminal.script')]; "
            "print(heavy); assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_plugin_fixture_names_do_not_clash_with_the_repository_fixtures():
    from tests.support import pcsc_env as env
    from mynaemu.tools.harness import pytest_plugin

    ours = {n for n in dir(pytest_plugin) if n.startswith("myna_")}
    assert ours == {"myna_card", "myna_reader", "myna_office"}
    assert not ours & set(dir(env))


DOWNSTREAM = '''
import pytest

SELECT_JPKI = bytes.fromhex("00A4040C0AD392F000260100000001")
SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")


def verify(card, pin):
    return card.transmit(bytes.fromhex("00200080") + bytes([len(pin)]) + pin.encode())


def test_persona_card(myna_card):
    card = myna_card("adult")
    assert card.transmit(SELECT_JPKI) == b"\\x90\\x00"
    assert card.transmit(SELECT_AUTH_PIN) == b"\\x90\\x00"
    assert card.pins["auth"] == "1234"
    assert verify(card, "9999") == b"\\x63\\xC2"
    assert verify(card, card.pins["auth"]) == b"\\x90\\x00"
    card.reset(warm=False)
    card.transmit(SELECT_JPKI)
    card.transmit(SELECT_AUTH_PIN)
    assert card.transmit(bytes.fromhex("00200080")) == b"\\x63\\xC3"
    assert card.image_path.exists()


def test_each_call_is_a_fresh_card(myna_card):
    first = myna_card("adult")
    first.transmit(SELECT_JPKI)
    first.transmit(SELECT_AUTH_PIN)
    verify(first, "9999")
    second = myna_card("adult")
    second.transmit(SELECT_JPKI)
    second.transmit(SELECT_AUTH_PIN)
    assert second.transmit(bytes.fromhex("00200080")) == b"\\x63\\xC3"
    assert second.image_path != first.image_path


def test_image_file_card_keeps_the_original_untouched(myna_card, tmp_path):
    source = myna_card("sign-1-left").image_path
    before = source.read_bytes()
    card = myna_card(source)
    card.transmit(SELECT_JPKI)
    card.transmit(bytes.fromhex("00A4020C02001B"))
    assert card.transmit(bytes.fromhex("00200080")) == b"\\x63\\xC1"
    card.transmit(bytes.fromhex("00200080") + b"\\x04WRNG")
    assert source.read_bytes() == before and card.image_path != source


def test_a_card_script(myna_card, tmp_path):
    script = tmp_path / "s.txt"
    script.write_text("> 00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01\\n< 9000\\n"
                      "> 00 A4 02 0C 02 00 18\\n< 9000\\n"
                      "> 00 20 00 80 {len(AUTH_PIN):02X} {AUTH_PIN}\\n< 9000\\n", encoding="utf-8")
    assert myna_card("adult").run_script(script) == 3


def test_office(myna_office):
    path = myna_office.issue_card(name="試験　一郎", sex="1")
    assert path.parent == myna_office.home and path.exists()
    assert "MYNAEMU_HOME" in myna_office.env


def test_reader(myna_reader):
    from smartcard.System import readers
    assert myna_reader in [str(r) for r in readers()]
'''


def test_downstream_project_gets_the_fixtures(pytester):
    pytester.makepyfile(test_downstream=DOWNSTREAM)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rs",
                                           "-k", "not test_reader and not test_office")
    result.assert_outcomes(passed=4)


@pytest.mark.slow
def test_downstream_office(pytester):
    pytester.makepyfile(test_downstream=DOWNSTREAM)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-k", "test_office")
    result.assert_outcomes(passed=1)


def test_a_failing_script_fails_the_downstream_test_with_file_and_line(pytester):
    pytester.makepyfile(test_fail='''
def test_script(myna_card, tmp_path):
    script = tmp_path / "s.txt"
    script.write_text("> 00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01\\n< 6A82\\n")
    myna_card("adult").run_script(script)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*s.txt:2: expected SW 6A82, got 9000*(answer to line 1)*"])


@pytest.mark.pcsc
def test_downstream_reader(pytester):
    """Served through pcscd + vpcd; skips with a reason where PC/SC cannot run."""
    pytester.makepyfile(test_downstream=DOWNSTREAM)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rs", "-k", "test_reader")
    outcomes = result.parseoutcomes()
    if outcomes.get("skipped"):
        result.stdout.fnmatch_lines(["*SKIPPED*"])
        pytest.skip("downstream myna_reader skipped: " + result.stdout.str().splitlines()[-1])
    result.assert_outcomes(passed=1)
