"""Application and 交付通知書 ids (FLOW-3, FLOW-4): 16 characters with a check symbol."""
from __future__ import annotations

import re
import secrets


# --- application / notice ids (FLOW-3, FLOW-4) ----------------------------------------------
# The seeds show a QR on the form and on the 交付通知書 but not its content (gap 9). Decision:
# 16 characters: 15 random symbols of Crockford's base-32 alphabet (no I, L, O, U, so nothing
# is misread when typed from paper) and one check symbol c with c + Σ α^(16-i)·v_i = 0 in
# GF(32) (α a primitive element). Distinct non-zero weights in a field catch every single-symbol
# error and every transposition of two distinct symbols (adjacent or not), the check included.
FORM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
FORM_ID_LENGTH = 16
_GF32_POLY = 0b100101  # x^5 + x^2 + 1, primitive


def _gf32_mul(a: int, b: int) -> int:
    product = 0
    while b:
        if b & 1:
            product ^= a
        b >>= 1
        a <<= 1
        if a & 0b100000:
            a ^= _GF32_POLY
    return product


def _form_check(body: str) -> str:
    total, weight = 0, 1
    for ch in reversed(body):
        weight = _gf32_mul(weight, 2)  # α = x; weights α^1 .. α^15, all distinct and ≠ 1
        total ^= _gf32_mul(weight, FORM_ALPHABET.index(ch))
    return FORM_ALPHABET[total]


# The audit masks every run of 12 digits as a 個人番号 (values.scrub, NUM-1), the target column
# included: an id holding one (about 3 in a million) would lose its card's audit records. None is
# ever made; such an id is drawn again.
_TWELVE_DIGITS = re.compile(r"[0-9]{12}")


def make_form_id(rng=None) -> str:
    """A new 16-character form id (application or 交付通知書), never with 12 digits in a row."""
    pick = (rng or secrets.SystemRandom()).choice
    while True:
        body = "".join(pick(FORM_ALPHABET) for _ in range(FORM_ID_LENGTH - 1))
        form_id = body + _form_check(body)
        if not _TWELVE_DIGITS.search(form_id):
            return form_id


def normalise_form_id(text: str) -> str:
    """Upper-case, drop spaces and hyphens (as typed from paper)."""
    if not isinstance(text, str):
        raise TypeError(f"an id must be a str, got {type(text).__name__}")
    return text.replace("-", "").replace(" ", "").upper()


def check_form_id(text: str) -> str:
    """The normalised id, or ValueError saying what is wrong with it."""
    value = normalise_form_id(text)
    if len(value) != FORM_ID_LENGTH:
        raise ValueError(f"id {text!r} must have {FORM_ID_LENGTH} characters, got {len(value)}")
    bad = sorted(set(value) - set(FORM_ALPHABET))
    if bad:
        raise ValueError(f"id {text!r} has characters outside {FORM_ALPHABET}: {''.join(bad)}")
    if _form_check(value[:-1]) != value[-1]:
        raise ValueError(f"id {text!r}: wrong check character (mistyped?)")
    return value
