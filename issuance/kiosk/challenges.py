"""The centre's challenges (nonces) when it runs as several worker processes (issuance/http/prefork.py).

A single-process centre keeps its open sessions in a dict (issuance/kiosk/centre.py, Centre); worker
processes share no memory, and a kiosk's `POST /v1/session` and its `POST /v1/issue` may land on
different workers. Decision: the challenge carries its own session, MACed, and only the spent
ones are shared, in the store (issuance/store/challenges.py):

    challenge (32 bytes, NONCE_BYTES as before: the card signs it as it signed the random nonce)
      = 10 random bytes ‖ expiry (ms since the epoch, 6 bytes, big-endian)
        ‖ HMAC-SHA256(secret, domain ‖ kiosk id ‖ method ‖ those 16 bytes)[:16]

- `secret`: 32 random bytes made by the serving parent before it forks, held in memory only
  (the workers inherit it); challenges do not survive a restart of the service, as before.
- Opening a session writes nothing (no store round trip on the hot path: bench S1 opens sessions).
- Redeeming checks the MAC (a forged, altered or other kiosk's/method's challenge is
  "challenge-replayed": unknown), then spends it in the store (the second spender, in whatever
  process, gets "challenge-replayed"), then checks the expiry ("challenge-expired"). Spent first,
  so a challenge is single use whatever happens next, as in the single-process centre.
- Expiry as before: `nonce_lifetime` of the centre's clock after the session opened.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets

from mynaemu.issuance.kiosk.wire import NONCE_BYTES, Refusal

DOMAIN = b"mynaemu-centre-challenge-v1\n"
_RANDOM, _EXPIRY, _MAC = 10, 6, 16
assert _RANDOM + _EXPIRY + _MAC == NONCE_BYTES


def _mac(secret: bytes, kiosk_id: str, method: str, body: bytes) -> bytes:
    message = DOMAIN + kiosk_id.encode("utf-8") + b"\n" + method.encode("ascii") + b"\n" + body
    return hmac.new(secret, message, hashlib.sha256).digest()[:_MAC]


class SharedChallenges:
    """Challenges valid in every worker holding the same `secret`, spent in `spent` (an object
    with spend(token, expires, now) -> bool, e.g. store.StoreSpentChallenges)."""

    def __init__(self, secret: bytes, spent):
        if not isinstance(secret, (bytes, bytearray)) or len(secret) < 32:
            raise ValueError("the challenge secret must be at least 32 bytes")
        self._secret = bytes(secret)
        self.spent = spent

    @staticmethod
    def new_secret() -> bytes:
        return secrets.token_bytes(32)

    def open(self, kiosk_id: str, method: str, expires: _dt.datetime) -> bytes:
        """A fresh challenge for this kiosk and method, good until `expires`."""
        ms = int(expires.timestamp() * 1000)
        if not 0 <= ms < 1 << (8 * _EXPIRY):
            raise ValueError(f"expiry {expires.isoformat()} out of the challenge's range")
        body = secrets.token_bytes(_RANDOM) + ms.to_bytes(_EXPIRY, "big")
        return body + _mac(self._secret, kiosk_id, method, body)

    def take(self, token: bytes, kiosk_id: str, method: str, now: _dt.datetime, lifetime: _dt.timedelta) -> None:
        """Redeem `token` once (Refusal otherwise); `lifetime` only words the expiry message."""
        if len(token) != NONCE_BYTES:
            raise Refusal("challenge-replayed", "the challenge is unknown or was already used (replay)")
        body, given = token[:_RANDOM + _EXPIRY], token[_RANDOM + _EXPIRY:]
        if not hmac.compare_digest(given, _mac(self._secret, kiosk_id, method, body)):
            # Forged, altered, from an earlier run of the service, or issued to another kiosk or
            # method (the MAC covers both): the centre never issued it to this caller.
            raise Refusal("challenge-replayed", "the challenge is unknown or was issued to another kiosk or method")
        expires = _dt.datetime.fromtimestamp(int.from_bytes(body[_RANDOM:], "big") / 1000, _dt.timezone.utc)
        if not self.spent.spend(token, expires, now):  # single use, whatever happens next
            raise Refusal("challenge-replayed", "the challenge was already used (replay)")
        if now > expires:
            raise Refusal("challenge-expired", "the challenge expired before the card answered "
                                               f"(lifetime {lifetime.total_seconds():.0f} s)")


__all__ = ["SharedChallenges", "DOMAIN"]
