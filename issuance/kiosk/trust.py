"""What the kiosk's back office checks before it trusts a card: the card the store issued, and its state.

Two findings of the trust-boundaries issue live here (the centre and the municipality call in):

- **A certificate is the one the store issued, byte for byte.** The store finds a card by the
  auth certificate's serial, but a serial is only a number anyone can put in a certificate: the
  presented certificate must equal the DER the store recorded for that serial
  (``issued_auth_certificate``). Anything else is refused as ``cert-invalid`` (exit 7), even when
  its chain verifies (a leaked or legacy CA key, store_pki.py).
- **現行方式 and 条例利用AP enrolment honour the card's state (STATE-1).** Enrolment looks at the
  very card whose certificate is on the chip, and writes that card's serial into the AP
  (card/apps/jorei.py DF63). The 利用者ID of 現行方式 belongs to the person and survives a
  reissue, so the municipality checks the card named in the AP (which must be the person's);
  for an AP written without it, the person's newest delivered card. Only an active, unexpired
  card is served:
  suspended (一時停止) → ``cert-hold`` (5), abolished / revoked / collected / destroyed →
  ``cert-revoked`` (5), past its expiry day (VAL-12, policy.expired) → ``cert-expired`` (6), no
  delivered card → ``cert-unknown`` (5). The reasons are the kiosk's existing ones (wire.REASONS)
  so every exit code keeps its meaning.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hmac

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mynaemu.issuance import policy
from mynaemu.issuance.kiosk.wire import Refusal

# Delivered cards, newest first decides (STATE-1). applied..awaiting_delivery never reached the holder.
DELIVERED_STATES = ("active", "suspended", "abolished", "collected", "destroyed", "revoked")
_ENDED = ("abolished", "collected", "destroyed", "revoked")
_MAX_SERIAL = (1 << 63) - 1  # the store's serials are 63-bit (store.new_cert_serial)


@dataclasses.dataclass(frozen=True)
class CardStatus:
    """The lifecycle state of one card as the store knows it (state None: no delivered card)."""

    state: str | None
    expires: _dt.date | None = None
    serial: str | None = None   # the store's 15-digit card serial (cards.serial)
    application_id: str | None = None   # the card's application id (its id in the store)


def refuse_unless_active(card: CardStatus, at: _dt.datetime, what: str = "the card") -> None:
    """Refusal (wire.Refusal) unless `card` is active and not past its expiry day at `at`."""
    if card.state is None:
        raise Refusal("cert-unknown", f"{what} was never delivered by this municipality")
    if card.state == "suspended":
        raise Refusal("cert-hold", f"{what} is suspended (一時停止): nothing is issued until it is resumed")
    if card.state in _ENDED:
        raise Refusal("cert-revoked", f"{what} is no longer in service ({card.state})")
    if card.state != "active":
        raise Refusal("cert-unknown", f"{what} has not been handed over yet ({card.state})")
    if card.expires is not None and policy.expired(card.expires, at):
        raise Refusal("cert-expired", f"{what} expired on {card.expires.isoformat()} (VAL-12)")


def _status(row) -> CardStatus:
    expires = _dt.date.fromisoformat(row["expires"]) if row["expires"] else None
    return CardStatus(row["state"], expires, row["serial"], row["application_id"])


def card_status(store, app_id: str) -> CardStatus:
    row = store.card_state_row(app_id)
    return CardStatus(None) if row is None else _status(row)


def card_of_person_by_serial(store, person_id: int, serial: str) -> CardStatus:
    """The state of the person's card with this serial (the one a 条例利用AP was written on);
    Refusal("resident-unknown") when the person has no such card."""
    row = store.card_state_by_serial(person_id, serial)
    if row is None:
        raise Refusal("resident-unknown", "this card is not registered for the 利用者ID on it")
    return _status(row)


def newest_delivered_card(store, person_id: int) -> CardStatus:
    """The state of the person's most recently created card that reached the holder."""
    row = store.newest_card_state(person_id, DELIVERED_STATES)
    return CardStatus(None) if row is None else _status(row)


def issued_auth_certificate(store, certificate) -> str | None:
    """The application id of the card the store issued `certificate` to; None when the store
    issued no auth certificate with its serial; Refusal("cert-invalid") when it did, but a
    different one (another key, another issuer, any other byte)."""
    if not isinstance(certificate, x509.Certificate):
        raise TypeError(f"expected an x509.Certificate, got {type(certificate).__name__}")
    serial = certificate.serial_number
    if not 0 < serial <= _MAX_SERIAL:
        return None
    row = store.auth_certificate_der(serial)
    if row is None:
        return None
    if not hmac.compare_digest(bytes(row["der"]), certificate.public_bytes(Encoding.DER)):
        raise Refusal("cert-invalid", "the certificate is not the one issued for its serial number "
                                      "(another key or issuer)")
    return row["application_id"]
