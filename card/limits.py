"""Card-side limits on the personal data a card is personalised with (spec §13.4).

These are the binding limits: the back office refuses input beyond them at its boundary
(`issue apply`, `issue move`) and personalisation refuses it again, naming the limit, so no
record is accepted that cannot be issued.

住所 (address), ADDRESS_MAX_CHARS = 400 characters, the limit the back office's input rules use
too (issuance/validate.py LIMITS["address"] is this number). Real cards hold the full 住民票
address, building and room (方書) included (§13.4); the longest real ones run to about 100
characters. The card carries 400:
- kenhojo EF 0002 writes its outer length in BER long form (`82 LL LL` reaches 65,535 bytes;
  400 characters are at most 1,600 UTF-8 bytes) and the DF21 offsets are 16-bit;
- the signing certificate's 住所 otherName (§7.3) is a UTF8String of any length;
- the 券面AP address image (kenkaku DF26, card/images.py) wraps at ADDRESS_LINE_CHARS a line,
  so 400 characters are 25 to 40 lines of 20 pixels, an image of some KB, inside kenkaku
  EF 0002's `82 LL LL`.
"""
from __future__ import annotations

ADDRESS_MAX_CHARS = 400
ADDRESS_SOURCE = "what the card holds: card/limits.py ADDRESS_MAX_CHARS, spec §13.4"


class LimitError(ValueError):
    """Personal data beyond what the card is personalised with."""


def check_address(address: str) -> str:
    """The address unchanged, or LimitError naming ADDRESS_MAX_CHARS."""
    if not isinstance(address, str):
        raise LimitError("住所 must be text")
    if len(address) > ADDRESS_MAX_CHARS:
        raise LimitError(f"address is {len(address)} characters; the limit is {ADDRESS_MAX_CHARS} "
                         f"({ADDRESS_SOURCE})")
    return address
