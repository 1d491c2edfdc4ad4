"""`mynaemu issue ocsp-serve --workers N` (N > 1): the parent announces the URL once every worker
listens, supervises them until SIGTERM/SIGINT, then stops them all (issuance/pki/workers.py,
issuance/http/prefork.py). `kiosk serve --workers` is tools/cli/kiosk.py's _serve_workers.
"""
from __future__ import annotations

import json
import sys

import click


def ocsp_serve_workers(location, pki, clock, host: str, port: int, workers: int, as_json: bool,
                       on_record=None) -> None:
    """`issue ocsp-serve` as `workers` processes; the first stdout line is the URL, as with one.
    `on_record(event, **detail)`: the start (once every worker listens) and the stop, for the audit."""
    from mynaemu.issuance.http.prefork import WorkerStartError, run_until_signal
    from mynaemu.issuance.pki.ocsp import crl_url
    from mynaemu.issuance.pki.workers import ocsp_pool
    from mynaemu.tools.cli.errors import ExitCode
    from mynaemu.tools.cli.issue import fail

    try:
        stack = ocsp_pool(location, pki=pki, clock=clock, host=host, port=port, workers=workers)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", ExitCode.REFUSED) from None

    started = []

    def announce():
        url = stack.ocsp_url
        if on_record is not None:
            on_record("start", url=url, workers=workers)
            started.append(url)
        doc = {"url": url, "crl": {k: crl_url(url, k) for k in ("auth", "sign")}, "workers": workers}
        click.echo(json.dumps(doc) if as_json else url)
        sys.stdout.flush()

    try:
        run_until_signal(stack.pool, announce)
    except WorkerStartError as exc:
        raise fail(str(exc), ExitCode.REFUSED) from None
    finally:
        if started:
            on_record("stop", url=started[0])
