"""One TEST stack of コンビニ交付 services, wired together on loopback.

The services (centre.Centre, municipality.MunicipalityServer, the residents they ask and the
documents they make) know nothing of each other's doors; this module is the one place that
builds them and starts their doors: the JPKI validity service (OCSP + CRL, issuance/pki/ocsp.py)
and the centre's HTTP door (centre_http.py), in memory (``start_services``) or over the issuing
store under a home (``services_from_home``: one 証明発行サーバ per municipality of the store,
the home's kiosk key and LGPKI signers, keyfiles.py).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Callable

from mynaemu.issuance.kiosk import keyfiles
from mynaemu.issuance.clock import utc_now
from mynaemu.issuance.kiosk.centre import Centre
from mynaemu.issuance.kiosk.centre_http import serve_centre
from mynaemu.issuance.kiosk.directory import StoreDirectory
from mynaemu.issuance.kiosk.municipality import MunicipalityServer
from mynaemu.issuance.kiosk.residents import ResidentDirectory
from mynaemu.issuance.kiosk.wire import DEFAULT_KIOSK_ID
from mynaemu.issuance.pki import ocsp as _ocsp
from mynaemu.issuance.pki import revocation as rv


@dataclasses.dataclass
class Services:
    """The centre and the JPKI validity service (OCSP + CRL) running on loopback."""

    centre: Centre
    centre_url: str
    ocsp_url: str | None
    crl_url: str | None
    _servers: list = dataclasses.field(default_factory=list, repr=False)
    _threads: list = dataclasses.field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Stop every server this stack started and wait for their threads; idempotent."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(5)
        self.centre.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_validity_service(pki, source: rv.RevocationSource, clock: Callable[[], _dt.datetime],
                           host: str = "127.0.0.1", **options):
    """The JPKI validity service: OCSP responder + CRLs of both TEST CAs. (server, thread, url).
    `options` go to KeepAliveServer (e.g. `listener`, issuance/http/prefork.py)."""
    responder = _ocsp.OcspResponder({"auth": pki.auth_ca, "sign": pki.sign_ca}, source, clock)
    return _ocsp.serve_ocsp(responder, host, **options)


def start_services(*, pki, source: rv.RevocationSource, directory: ResidentDirectory,
                   municipalities: dict, kiosk_keys: dict, trail, clock: Callable[[], _dt.datetime] = utc_now,
                   host: str = "127.0.0.1", ocsp_url: str | None = None, crl_url: str | None = None,
                   validity: bool = True, centre_port: int = 0, listeners: dict | None = None,
                   **centre_kwargs) -> Services:
    """Start the validity service (unless `validity` is False) and the centre on loopback.

    ocsp_url / crl_url override where the centre looks (tests point one at a dead port).
    listeners: {"centre": socket, "validity": socket} already listening (a worker process of
    issuance/http/prefork.py) instead of binding host and port.
    trail: where the centre records its refusals (SEC-8): store.StoreCentreTrail over a store,
    records.MemoryCentreTrail for a stack without one (chosen by the caller, never defaulted).
    """
    listeners = listeners or {}
    servers, threads = [], []
    try:
        own_url = None
        if validity:
            server, thread, own_url = start_validity_service(
                pki, source, clock, host, **({"listener": listeners["validity"]} if "validity" in listeners else {}))
            servers.append(server)
            threads.append(thread)
        o_url = ocsp_url if ocsp_url is not None else own_url
        c_url = crl_url if crl_url is not None else (_ocsp.crl_url(own_url, "auth") if own_url else None)
        centre = Centre(trust_anchor=pki.auth_ca.certificate, directory=directory,
                        municipalities=municipalities, kiosk_keys=kiosk_keys, clock=clock, trail=trail,
                        ocsp_url=o_url, crl_url=c_url, **centre_kwargs)
        server, thread, url = serve_centre(
            centre, host, centre_port, **({"listener": listeners["centre"]} if "centre" in listeners else {}))
        servers.append(server)
        threads.append(thread)
    except BaseException:
        for server in servers:
            server.shutdown()
        raise
    return Services(centre, url, o_url, c_url, servers, threads)


def services_from_home(home, *, db: str | None = None, clock: Callable[[], _dt.datetime] = utc_now,
                       host: str = "127.0.0.1", pki=None, **kwargs) -> Services:
    """The whole TEST stack over the issuing store under `home` (or the PostgreSQL store at
    `db`): the JPKI validity service answering from the store, and the centre with one
    証明発行サーバ per municipality of the store (each signing as its mayor with a TEST LGPKI
    certificate under `<home>/kiosk/lgpki/`), trusting the home's kiosk key. The issuance
    history (CVS-18 item 3) and the centre's refusals (SEC-8) go into that store, each write on
    a connection of its own (store/service_records.py), so they survive a restart and every
    worker process (workers.py) writes the same table and the same audit chain."""
    from mynaemu.issuance.store import Store, StoreCentreTrail, StoreKioskHistory, StoreRevocationSource
    from mynaemu.issuance.store.pki import store_pki

    directory = StoreDirectory(home, db=db)
    if pki is None:
        with Store(directory.path) as store:
            pki = store_pki(store)  # the store's own CAs, never the built-in seeded ones
    source = StoreRevocationSource(directory.path)
    codes = directory.municipality_codes() or ["13221"]
    history = StoreKioskHistory(directory.path)
    municipalities = {code: MunicipalityServer(code, keyfiles.load_or_create_signer(home, code), directory,
                                               history=history)
                      for code in codes}
    return start_services(pki=pki, source=source, directory=directory,
                          municipalities=municipalities, trail=StoreCentreTrail(directory.path),
                          kiosk_keys={DEFAULT_KIOSK_ID: keyfiles.load_or_create_kiosk_key(home)}, clock=clock,
                          host=host, **kwargs)
