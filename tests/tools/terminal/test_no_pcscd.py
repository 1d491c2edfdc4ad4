"""No pcscd: a reader named on the command line gets one line and the card exit code, not a
traceback. (pyscard raises its PC/SC layer's EstablishContextException, which is not one of its
SmartcardExceptions, when SCardEstablishContext finds no service.) The socket is pointed at a path
where nothing listens, so no pcscd of the machine is asked or disturbed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import REPO

pytest.importorskip("smartcard")

NOWHERE = {"PCSCLITE_CSOCK_NAME": "/nonexistent/mynaemu-no-pcscd.comm"}


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **NOWHERE}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("call", ["list_readers()", "PcscConnection('X')", "PcscConnection(None)"])
def test_the_terminal_says_pcscd_is_missing(call):
    result = _python("from mynaemu.tools.terminal.connections import list_readers, PcscConnection\n"
                     "from mynaemu.tools.terminal.errors import TransportError\n"
                     f"try:\n    {call}\nexcept TransportError as exc:\n    print('TransportError:', exc)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("TransportError: cannot list PC/SC readers (is pcscd running?)"), result.stdout


def test_kiosk_issue_with_a_reader_and_no_pcscd_is_one_line(tmp_path):
    from mynaemu.issuance.kiosk.wire import RefusalClass
    from mynaemu.tools.cli.kiosk import exit_code

    env = {**os.environ, **NOWHERE}
    result = subprocess.run([sys.executable, "-m", "mynaemu", "kiosk", "issue", "--reader", "X", "--centre",
                             "http://127.0.0.1:9", "--pin", "1234", "--document", "juminhyo", "-o",
                             str(tmp_path / "x.pdf")], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == exit_code(RefusalClass.CARD), result.stderr
    assert result.stderr.count("\n") == 1 and "is pcscd running?" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.pdf").exists()
