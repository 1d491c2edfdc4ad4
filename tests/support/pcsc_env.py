"""Test harness for PC/SC tests: a private pcscd, persona card images, cards served through vpcd.

The fixtures built on it (`pcscd`, `card_server`, `persona_images`) are in tests/fixtures/pcsc.py,
loaded for every test by tests/conftest.py; tests import the helpers as `from tests.support import pcsc_env`.
Tests skip themselves (with the reason) only when pcscd, the vpcd driver, OpenSC or pyscard are
not installed; setup.sh and the CI install them, so there they run. Everything started here is
stopped by PID: the pcscd only if this session started it, each `card serve` subprocess always.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mynaemu.tools.harness import pcscd as pcscd_ctl

READER = pcscd_ctl.READER
PKCS11_MODULE = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
TOOL_TIMEOUT = 60


def missing_reason(*, opensc: bool = True) -> str | None:
    """Why PC/SC tests cannot run here, or None when everything is installed."""
    missing = pcscd_ctl.missing_tools(opensc=opensc)
    if opensc and not Path(PKCS11_MODULE).exists():
        missing.append(f"{PKCS11_MODULE} (apt-get install opensc)")
    if opensc and shutil.which("openssl") is None:
        missing.append("openssl")
    return "PC/SC stack not installed: " + ", ".join(missing) if missing else None


def skip_unless_installed(*, opensc: bool = True) -> None:
    reason = missing_reason(opensc=opensc)
    if reason:
        pytest.skip(reason)


def bring_up_pcscd() -> pcscd_ctl.PcscdHandle:
    """ensure_pcscd(), skipping (with the reason) when somebody else's pcscd runs without vpcd:
    that daemon serves the tester's real readers and is never stopped or restarted."""
    try:
        return pcscd_ctl.ensure_pcscd()
    except pcscd_ctl.ForeignPcscd as exc:
        pytest.skip(str(exc))
    except pcscd_ctl.PcscdError as exc:
        # Installed but unusable (e.g. not root): a real failure, not a skip.
        pytest.fail(f"cannot bring up pcscd: {exc}", pytrace=False)


def serve_card(path, *, port: int = pcscd_ctl.VPCD_PORT, in_process: bool | None = None,
               timeout: float = 20.0) -> pcscd_ctl.CardServerHandle:
    """Serve the image at `path` with `python -m mynaemu.tools.cli card serve FILE --port PORT`.

    Falls back to an in-process VpcdServer thread while the CLI has no `serve` command. Returns
    once pyscard sees a card in the reader; `.stop()` kills the server by PID and waits until
    pcscd reports the reader empty.
    """
    return pcscd_ctl.start_card_server(path, port=port, in_process=in_process, timeout=timeout)


def create_persona(name: str, path) -> Path:
    """`python -m mynaemu.tools.cli card create --persona NAME -o FILE`; fails the test on error."""
    path = Path(path)
    done = subprocess.run([sys.executable, "-m", "mynaemu.tools.cli", "card", "create", "--persona", name,
                           "-o", str(path), "--force"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        pytest.fail(f"card create --persona {name} failed: {tail[-1] if tail else done.returncode}",
                    pytrace=False)
    return path


def opensc_env(*, force_driver: bool = False) -> dict:
    """Environment for OpenSC tools. Unforced by default: the card must be detected as JPKI by
    OpenSC's own probing (every foreign-AID probe refused, pcsc.md), not by OPENSC_DRIVER."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENSC_DRIVER", "OPENSC_CONF")}
    if force_driver:
        env["OPENSC_DRIVER"] = "jpki"
    return env


def run_tool(args, *, env=None, input=None, check=True) -> subprocess.CompletedProcess:
    """Run a command-line tool; with check=True a non-zero exit fails the test with its output."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env or opensc_env(),
                          input=input, timeout=TOOL_TIMEOUT)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}",
                    pytrace=False)
    return done
