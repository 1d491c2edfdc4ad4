"""Staff passwords: a memory-hard hash (Argon2id, argon2-cffi), initial passwords, the ageing rule.

SEC-4: every member of staff authenticates with their own ID and a password. The password is
stored only as an Argon2id hash in PHC form (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``): the
parameters it was made with travel with it, so a hash made under older (or, in tests, cheaper)
parameters still verifies after the defaults change. Nothing here logs or returns a password
except ``new_initial_password``, whose caller prints it once.

SEC-5 ageing ("a password unchanged for 3 months stops working"), defined precisely:
the password set at instant S stops working at ``expires_at(S)``: the same JST wall-clock time on
the same day of the month three calendar months later, the day clamped to the last day of a
shorter month (policy D3: 11-30 + 3 months is 02-28, 02-29 in a leap year). A step at instant T
is refused for age when ``T >= expires_at(S)``; a step dated before S (stores are driven at
simulated dates in both directions) is never refused for age.
"""
from __future__ import annotations

import datetime as _dt
import secrets
import string

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mynaemu.issuance import policy
from mynaemu.issuance.clock import JST

__all__ = ["PASSWORD_MIN", "PASSWORD_MAX", "AGE_MONTHS", "hash_password", "verify_password", "dummy_verify",
           "new_initial_password", "check_new_password", "expires_at", "is_aged", "PasswordRuleError"]


PASSWORD_MIN = 12      # characters
PASSWORD_MAX = 128     # characters: argon2 takes any length, a bound keeps the input sane
AGE_MONTHS = 3         # SEC-5

# RFC 9106 section 4, the second recommended option (Argon2id, t=3, 64 MiB, p=4): argon2-cffi's default.
_HASHER = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, hash_len=32, salt_len=16, type=Type.ID)
# A hash of a random secret nobody knows, made with the same parameters, so that an unknown ID
# costs the same verification as a known one (constant-time refusals, SEC-4).
_DUMMY = None


class PasswordRuleError(ValueError):
    """A new password that breaks the rules below (one line, never containing the password)."""


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """The PHC string of `password` (a fresh random salt each time)."""
    return (hasher or _HASHER).hash(password)


def verify_password(encoded: str, password: str) -> bool:
    """True when `password` matches `encoded` (parameters read from the hash itself)."""
    try:
        return _HASHER.verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> bool:
    """Spend one verification for an ID that does not exist; always False."""
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = _HASHER.hash(secrets.token_urlsafe(32))
    verify_password(_DUMMY, password)
    return False


_ALPHABET = string.ascii_letters + string.digits


def new_initial_password() -> str:
    """20 random letters and digits (~119 bits): printed once to the officer who made the account."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(20))


def check_new_password(password: str, *, staff_id: str) -> None:
    """PasswordRuleError unless `password` is 12-128 printable characters, not only one class of
    character, and does not contain the staff ID."""
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise PasswordRuleError(f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if any(not ch.isprintable() for ch in password):
        raise PasswordRuleError("a password holds printable characters only (no control characters)")
    if password.strip() != password:
        raise PasswordRuleError("a password does not begin or end with white space")
    if staff_id.lower() in password.lower():
        raise PasswordRuleError("a password does not contain the staff ID")
    classes = [any(c.islower() for c in password), any(c.isupper() for c in password),
               any(c.isdigit() for c in password), any(not c.isalnum() for c in password)]
    if sum(classes) < 2:
        raise PasswordRuleError("a password mixes at least two of: lower case, upper case, digits, other "
                                "characters")


def expires_at(set_at: _dt.datetime) -> _dt.datetime:
    """The instant a password set at `set_at` stops working (SEC-5, see the module docstring)."""
    local = set_at.astimezone(JST)
    day = policy.add_months(local.date(), AGE_MONTHS)
    return _dt.datetime.combine(day, local.timetz())


def is_aged(set_at: _dt.datetime, at: _dt.datetime) -> bool:
    """True when a step at `at` is refused because the password set at `set_at` is 3 months old."""
    if at < set_at:
        return False  # a step dated before the password was set is not refused for age
    return at >= expires_at(set_at)
