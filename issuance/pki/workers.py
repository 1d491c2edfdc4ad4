"""`mynaemu issue ocsp-serve --workers N` (N > 1): the OCSP/CRL responder as worker processes
sharing its port (issuance/http/prefork.py). The responder is stateless over the store (each
question opens its own read connection), so the workers share nothing else; the caller makes the
store's schema and TEST CAs before it forks (the workers inherit the loaded PKI).
"""
from __future__ import annotations

from typing import Callable

from mynaemu.issuance.http.prefork import Prefork, WorkerStack, http_url


def ocsp_pool(location, *, pki, clock: Callable, host: str, port: int, workers: int) -> WorkerStack:
    """`workers` processes each answering OCSP and serving the CRLs from the store at `location`."""
    from mynaemu.issuance.pki.ocsp import OcspResponder, crl_url, serve_ocsp
    from mynaemu.issuance.store import StoreRevocationSource

    def worker(listeners, index):
        responder = OcspResponder({"auth": pki.auth_ca, "sign": pki.sign_ca}, StoreRevocationSource(location),
                                  clock=clock)
        server, thread, _ = serve_ocsp(responder, host, listener=listeners[0])

        def stop():
            server.shutdown()
            thread.join(5)
        return stop

    pool = Prefork([(host, port)], worker, workers, name="OCSP/CRL responder")
    url = http_url(host, pool.addresses[0][1])
    return WorkerStack(pool, None, url, crl_url(url, "auth"))


__all__ = ["ocsp_pool"]
