"""`issue ocsp-serve` acts under its service identity in the trail (issue 13, SEC-8, SEC-19: a
service's log-in and log-out are logged like staff's): one record when it starts serving and one
when it stops, operator `service:ocsp`, with its URL and workers; no staff password is asked."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from mynaemu.issuance.store import Store
from tests.support.store_rows import dump

CLI = [sys.executable, "-m", "mynaemu.tools.cli", "issue"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_start_and_stop_are_service_records(home, workers):
    env = {k: v for k, v in os.environ.items() if k != "MYNAEMU_PASSWORD"}   # a service needs none
    before = len(dump(home)["audit"])
    server = subprocess.Popen([*CLI, "ocsp-serve", "--json", "--workers", workers, "--at", "2026-06-01T10:00"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                              env=env)
    try:
        url = json.loads(server.stdout.readline())["url"]
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, server.stderr.read()
        server.stdout.close()
        server.stderr.close()
    with Store.open(home) as store:
        records = [r for r in store.audit_rows() if r["operation"] == "ocsp-serve"]
        assert store.verify_audit_chain()[1] is None
    assert [(r["operator"], r["reason"], r["outcome"]) for r in records] == \
        [("service:ocsp", "start", "ok"), ("service:ocsp", "stop", "ok")]
    start, stop = (json.loads(r["detail"]) for r in records)
    assert start == {"url": url, "workers": int(workers)} and stop == {"url": url}
    assert records[0]["at"].startswith("2026-06-01T01:00")          # the service's clock (--at, JST)
    assert len(dump(home)["audit"]) == before + 2
