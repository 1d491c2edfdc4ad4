"""`mynaemu kiosk serve --workers N` (N > 1): the kiosk's TEST stack (the 証明書交付センター and
the JPKI validity service) as worker processes sharing both ports (issuance/http/prefork.py).

Everything made on first use (the store's schema and TEST CAs, the kiosk key, the 利用者ID
secret, each municipality's LGPKI signer) is made here, in the parent, before it forks: the
workers then only load it, and never race to create it. Each worker opens its own store
connections. The centre's challenges are MACed with a secret the parent draws (in memory only)
and spent in the store (issuance/kiosk/challenges.py), so a session opened in one worker is
redeemed once, in any; the validity service is stateless over the store.
"""
from __future__ import annotations

from typing import Callable

from mynaemu.issuance.http.prefork import Prefork, WorkerStack, http_url


def kiosk_stack_pool(home, *, db: str | None, clock: Callable, host: str, centre_port: int,
                     workers: int) -> WorkerStack:
    """`workers` processes each serving the centre and the validity service on shared ports
    (not started: call `.pool.start()`, or run_until_signal)."""
    from mynaemu.issuance.kiosk.challenges import SharedChallenges
    from mynaemu.issuance.kiosk.directory import StoreDirectory
    from mynaemu.issuance.kiosk.keyfiles import load_or_create_kiosk_key, load_or_create_signer
    from mynaemu.issuance.kiosk.services import services_from_home
    from mynaemu.issuance.kiosk.wire import DEFAULT_KIOSK_ID
    from mynaemu.issuance.pki.ocsp import crl_url
    from mynaemu.issuance.store import Store
    from mynaemu.issuance.store import StoreSpentChallenges
    from mynaemu.issuance.store.pki import store_pki

    directory = StoreDirectory(home, db=db)            # StoreError when there is no store
    with Store(directory.path) as store:              # the schema, made or migrated here
        store_pki(store)                               # the store's own CAs, created here if new
    for code in directory.municipality_codes() or ["13221"]:
        load_or_create_signer(home, code)
    load_or_create_kiosk_key(home, DEFAULT_KIOSK_ID)
    secret = SharedChallenges.new_secret()
    location = directory.path

    def worker(listeners, index):
        challenges = SharedChallenges(secret, StoreSpentChallenges(location))
        services = services_from_home(home, db=db, clock=clock, host=host, challenges=challenges,
                                      listeners={"centre": listeners[0], "validity": listeners[1]})
        return services.stop

    pool = Prefork([(host, centre_port), (host, 0)], worker, workers, name="kiosk services")
    (_, c_port), (_, v_port) = pool.addresses
    ocsp_url = http_url(host, v_port)
    return WorkerStack(pool, http_url(host, c_port), ocsp_url, crl_url(ocsp_url, "auth"))


__all__ = ["kiosk_stack_pool"]
