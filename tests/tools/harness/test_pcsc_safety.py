"""PC/SC safety: nothing here stops, restarts or reconfigures a pcscd it did not start.

On a tester's workstation a pcscd without the vpcd reader is the daemon serving their real
readers; ensure_pcscd() must refuse it (ForeignPcscd) and the test fixtures skip with the reason.
No pcscd is started or signalled by these tests: the machine's facts are monkeypatched.
"""
import subprocess
import sys

import pytest

from mynaemu.tools.harness import pcscd as pcscd_ctl

from tests.support import pcsc_env  # noqa: E402


@pytest.fixture
def foreign(monkeypatch, tmp_path):
    """A live process posing as a running pcscd without vpcd; every way to hurt it is trapped."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    hurt = []
    monkeypatch.setattr(pcscd_ctl, "running_pcscd_pid", lambda: proc.pid)
    monkeypatch.setattr(pcscd_ctl, "vpcd_listening", lambda port=pcscd_ctl.VPCD_PORT: False)
    monkeypatch.setattr(pcscd_ctl, "_kill_and_wait", lambda *a, **k: hurt.append(("kill", a)))
    monkeypatch.setattr(pcscd_ctl.subprocess, "Popen", lambda *a, **k: hurt.append(("start", a)))
    monkeypatch.setattr(pcscd_ctl, "STATE_FILE", tmp_path / "state.pid")
    yield proc, hurt
    proc.kill()
    proc.wait()


def test_a_pcscd_we_did_not_start_is_left_alone(foreign):
    proc, hurt = foreign
    with pytest.raises(pcscd_ctl.ForeignPcscd, match=rf"PID {proc.pid}.*left alone"):
        pcscd_ctl.ensure_pcscd()
    assert hurt == [] and proc.poll() is None


def test_the_fixtures_skip_with_the_reason(foreign):
    _proc, hurt = foreign
    with pytest.raises(pytest.skip.Exception, match="did not start"):
        pcsc_env.bring_up_pcscd()
    assert hurt == []


def test_only_the_recorded_pid_and_start_time_count_as_ours(foreign):
    proc, _hurt = foreign
    assert not pcscd_ctl._started_by_us(proc.pid)
    pcscd_ctl.STATE_FILE.write_text(f"{proc.pid} 12345\n")            # a recycled PID: other start time
    assert not pcscd_ctl._started_by_us(proc.pid)
    pcscd_ctl.STATE_FILE.write_text(f"{proc.pid} {pcscd_ctl._start_time(proc.pid)}\n")
    assert pcscd_ctl._started_by_us(proc.pid)


def test_a_running_pcscd_with_vpcd_is_reused_not_owned(monkeypatch):
    monkeypatch.setattr(pcscd_ctl, "running_pcscd_pid", lambda: 4242)
    monkeypatch.setattr(pcscd_ctl, "vpcd_listening", lambda port=pcscd_ctl.VPCD_PORT: True)
    handle = pcscd_ctl.ensure_pcscd()
    assert handle.pid == 4242 and not handle.owned
    handle.stop()                                   # does nothing: not ours
    assert not handle.owned


def test_vpcd_ports_lists_listening_slots_only(monkeypatch):
    monkeypatch.setattr(pcscd_ctl, "listening_ports", lambda: {35963, 35964, 35965, 22})
    assert pcscd_ctl.vpcd_ports() == [35963, 35964, 35965]
    assert pcscd_ctl.reader_for_port(35965) == "Virtual PCD 00 02"
    with pytest.raises(ValueError):
        pcscd_ctl.reader_for_port(22)
