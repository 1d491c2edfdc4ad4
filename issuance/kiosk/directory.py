"""The ResidentDirectory over the issuing store (the centre's and the municipalities' back office).

The store knows the person of a card and the card's state; what it does not keep is derived:
the 利用者ID from a secret under `<home>/kiosk/` (keyfiles.py, residents.derive_user_id), and the
household, seal registration and salary synthesized from the person (residents.synthesize_resident).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hmac

from mynaemu.issuance.identity import Identity
from mynaemu.issuance.kiosk import keyfiles
from mynaemu.issuance.kiosk import trust as kiosk_trust
from mynaemu.issuance.kiosk.residents import Resident, derive_user_id, synthesize_resident
from mynaemu.issuance.clock import JST


class StoreDirectory:
    """ResidentDirectory over the issuing store: the SQLite file under `home`, or the
    PostgreSQL database at `db` (a postgresql:// URL; the same schema, issuance/store/__init__.py).

    Thread-safe like store.StoreRevocationSource: each question opens its own short read
    connection. The store has no query for "the person of an auth certificate" nor a 利用者ID,
    so the SQL lives here: certificates → cards → persons, and the 利用者ID is derived
    (derive_user_id) from a secret under `<home>/kiosk/` (with PostgreSQL too: the home keeps
    the kiosk's keys and secrets). The resident's household, seal registration and salary are
    synthesized deterministically from the person (synthesize_resident): the store keeps no
    住民票 beyond the 基本4情報.
    """

    def __init__(self, home, *, db: str | None = None):
        from pathlib import Path

        from mynaemu.issuance.store import StoreError, store_location

        self.home = Path(home)
        self.path = store_location(self.home, db)
        if db is None and not self.path.exists():
            raise StoreError(f"{self.path}: no issuing store here")
        self.user_id_secret = keyfiles.user_id_secret(self.home)

    def _query(self, fn):
        from mynaemu.issuance.store import Store

        store = Store(self.path, migrate=False)
        try:
            return fn(store)
        finally:
            store.close()

    def _resident(self, store, person, card=None) -> Resident:
        from mynaemu.issuance.store import parse_iso

        if card is None:  # by 利用者ID (現行方式, 変換方式): the person's newest delivered card
            card = kiosk_trust.newest_delivered_card(store, person["id"])

        identity = Identity(
            name=person["name"], address=person["address"], birth=_dt.date.fromisoformat(person["birth"]),
            sex=person["sex"], individual_number=store.individual_number(person["id"]),
            juminhyo_code=person["juminhyo_code"], municipality_code=person["municipality_code"],
            prefecture_romaji=person["prefecture_romaji"], city_romaji=person["city_romaji"])
        return dataclasses.replace(synthesize_resident(
            identity, on=parse_iso(person["created_at"]).astimezone(JST).date(),
            user_id=derive_user_id(self.user_id_secret, person["municipality_code"], person["juminhyo_code"]),
            status=person["resident_status"]), card=card)

    def resident_for_certificate(self, certificate) -> Resident | None:
        """The holder of the card the store issued `certificate` (an x509.Certificate) to, with
        that card's state; None for an unknown serial; Refusal("cert-invalid") when the store
        issued a different certificate under that serial (kiosk_trust)."""
        def run(store):
            app_id = kiosk_trust.issued_auth_certificate(store, certificate)
            if app_id is None:
                return None
            person = store.person_of_card(app_id)
            return self._resident(store, person, kiosk_trust.card_status(store, app_id))
        return self._query(run)

    def resident_for_user_id(self, user_id: str, card_serial: str | None = None) -> Resident | None:
        """The person with this 利用者ID, with the state of the card `card_serial` (the card the
        条例利用AP was written on, which must be theirs) or else of their newest delivered card."""
        if not isinstance(user_id, str):
            return None

        def run(store):
            for person in store.all_persons():
                if hmac.compare_digest(derive_user_id(self.user_id_secret, person["municipality_code"],
                                                      person["juminhyo_code"]), user_id):
                    card = (None if card_serial is None
                            else kiosk_trust.card_of_person_by_serial(store, person["id"], card_serial))
                    return self._resident(store, person, card)
            return None
        return self._query(run)

    def municipality_codes(self) -> list[str]:
        return self._query(lambda store: store.municipality_codes())
