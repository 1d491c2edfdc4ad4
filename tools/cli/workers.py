"""The serve commands' multi-process form (`--workers N` > 1 on `mynaemu kiosk serve` and
`mynaemu issue ocsp-serve`): the parent announces the URLs once every worker listens, supervises
them until SIGTERM/SIGINT, then stops them all (issuance/kiosk/workers.py, issuance/pki/workers.py,
issuance/http/prefork.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click


def kiosk_serve_workers(home_path: Path, db, clock, host: str, port: int, workers: int) -> None:
    """`kiosk serve` as `workers` processes; the running file names the supervising parent."""
    from mynaemu.issuance.http.prefork import WorkerStartError, run_until_signal
    from mynaemu.issuance.kiosk.workers import kiosk_stack_pool
    from mynaemu.issuance.store import StoreError
    from mynaemu.tools.cli.kiosk import RUNNING_FILE, KioskExit, write_output

    try:
        stack = kiosk_stack_pool(home_path, db=db, clock=clock, host=host, centre_port=port, workers=workers)
    except (StoreError, OSError, ValueError) as exc:
        raise KioskExit(str(exc).splitlines()[0], 1) from None
    running = home_path / "kiosk" / RUNNING_FILE

    def announce():
        write_output(running, json.dumps({"url": stack.centre_url, "ocsp_url": stack.ocsp_url,
                                           "crl_url": stack.crl_url, "pid": os.getpid(),
                                           "workers": workers}).encode("utf-8"))
        click.echo(f"証明書交付センター {stack.centre_url}; JPKI validity service {stack.ocsp_url} "
                   f"(CRL {stack.crl_url}); {workers} worker processes; Ctrl-C stops", err=True)

    try:
        run_until_signal(stack.pool, announce)
    except WorkerStartError as exc:
        raise KioskExit(str(exc), 1) from None
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(running.read_text()).get("pid") == os.getpid():
                running.unlink()


def ocsp_serve_workers(location, pki, clock, host: str, port: int, workers: int, as_json: bool) -> None:
    """`issue ocsp-serve` as `workers` processes; the first stdout line is the URL, as with one."""
    from mynaemu.issuance.http.prefork import WorkerStartError, run_until_signal
    from mynaemu.issuance.pki.ocsp import crl_url
    from mynaemu.issuance.pki.workers import ocsp_pool
    from mynaemu.tools.cli.errors import ExitCode
    from mynaemu.tools.cli.issue import fail

    try:
        stack = ocsp_pool(location, pki=pki, clock=clock, host=host, port=port, workers=workers)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", ExitCode.REFUSED) from None

    def announce():
        url = stack.ocsp_url
        doc = {"url": url, "crl": {k: crl_url(url, k) for k in ("auth", "sign")}, "workers": workers}
        click.echo(json.dumps(doc) if as_json else url)
        sys.stdout.flush()

    try:
        run_until_signal(stack.pool, announce)
    except WorkerStartError as exc:
        raise fail(str(exc), ExitCode.REFUSED) from None
