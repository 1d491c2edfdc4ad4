"""個人番号 (Individual Number) numbering: the check digit and the TEST number generator.

- NUM-1: the number has 12 digits: an 11-digit body followed by one check digit.
- NUM-3 / rules.md §20 M2: the check digit follows 総務省令第85号 第5条:
  11 − (Σ_{n=1..11} Pn·Qn mod 11), or 0 when the remainder is 0 or 1. Pn is the n-th digit of
  the body counted from the right; Qn = n+1 for n = 1..6 and n−5 for n = 7..11.
- NUM-2 / NUM-5: J-LIS (機構) generates the number by converting the 住民票コード. That
  conversion is not public. The TEST back office stands in for it with a keyed one-way
  function: HMAC-SHA256(secret, domain ‖ 住民票コード) reduced to 11 decimal digits, plus the
  check digit. Without the secret, a number does not reveal its 住民票コード, and vice versa.
  It is NOT the real J-LIS conversion, and its numbers are synthetic.
- NUM-7: a number can be changed (leak, misuse). `attempt` > 0 yields a different number for
  the same 住民票コード; the caller keeps the history and checks uniqueness against its store
  (two codes map to the same body with probability about 10^-11 per pair).

This module never logs; callers must not log 個人番号 either (house rule: redact).
"""
from __future__ import annotations

import hashlib
import hmac

_DOMAIN = b"mynaemu/individual-number/v1/"


def _require_digits(value, length: int, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    # str.isdigit accepts full-width and other Unicode digits; only ASCII 0-9 are valid here
    if len(value) != length or not all("0" <= ch <= "9" for ch in value):
        raise ValueError(f"{what} must be exactly {length} ASCII digits, got {len(value)} characters")
    return value


def check_digit(body11: str) -> int:
    """The check digit of an 11-digit body (総務省令第85号 第5条; rules.md §20 M2)."""
    _require_digits(body11, 11, "body")
    total = 0
    for n in range(1, 12):
        p = int(body11[-n])  # n-th digit from the right
        q = n + 1 if n <= 6 else n - 5
        total += p * q
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def is_valid_individual_number(s: str) -> bool:
    """True when `s` is 12 ASCII digits whose last digit is the check digit of the first 11.

    Any str is accepted as input (wrong length or non-digits give False); a non-str is a
    TypeError because it is a programming error, not bad user input.
    """
    if not isinstance(s, str):
        raise TypeError(f"individual number must be a str, got {type(s).__name__}")
    if len(s) != 12 or not all("0" <= ch <= "9" for ch in s):
        return False
    return check_digit(s[:11]) == int(s[11])


def with_check_digit(body11: str) -> str:
    """The 12-digit number made of `body11` and its check digit."""
    return body11 + str(check_digit(body11))


def individual_number_from_juminhyo_code(code: str, secret: bytes, *, attempt: int = 0) -> str:
    """The TEST 個人番号 for a 住民票コード (NUM-2), via a keyed one-way function.

    code: the 住民票コード, 11 ASCII digits (its own check rules are not modelled).
    secret: the back office's numbering key (non-empty bytes); the same secret and code always
    give the same number. attempt: 0 for the first designation, 1, 2, ... for a changed
    number (NUM-7) or to step past a collision found by the caller.
    The body may start with 0; the result always passes is_valid_individual_number.
    """
    _require_digits(code, 11, "住民票コード")
    if not isinstance(secret, (bytes, bytearray)):
        raise TypeError(f"secret must be bytes, got {type(secret).__name__}")
    if not secret:
        raise ValueError("secret must not be empty")
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise ValueError(f"attempt must be a non-negative int, got {attempt!r}")
    message = _DOMAIN + code.encode("ascii") + b"/" + str(attempt).encode("ascii")
    digest = hmac.new(bytes(secret), message, hashlib.sha256).digest()
    # 256 bits reduced mod 10^11: the bias is below 2^-200, i.e. none in practice
    body = f"{int.from_bytes(digest, 'big') % 10**11:011d}"
    return with_check_digit(body)
