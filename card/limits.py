"""Card-side limits on the personal data a card is personalised with (spec §13.4).

These are the binding limits: the back office refuses input beyond them at its boundary
(`issue apply`, `issue move`) and personalisation refuses it again, naming the limit, so no
record is accepted that cannot be issued.

住所 (address), ADDRESS_MAX_CHARS = 200 characters. Real cards hold the full 住民票 address,
building and room included (§13.4); the card itself carries much more than that:
- kenhojo EF 0002 writes its outer length in BER long form (`82 LL LL` reaches 65,535 bytes;
  200 characters are at most 800 UTF-8 bytes) and the DF21 offsets are 16-bit;
- the signing certificate's 住所 otherName (§7.3) is a UTF8String of any length;
- the 券面AP address image (kenkaku DF26, card/images.py) wraps at ADDRESS_LINE_CHARS a line,
  so 200 characters are 13 to 20 lines of 20 pixels: still an image of a few KB.
The number bounds what a tester can be handed back on a card face and in the image, not what
the encoding could hold.
"""
from __future__ import annotations

ADDRESS_MAX_CHARS = 200


class LimitError(ValueError):
    """Personal data beyond what the card is personalised with."""


def check_address(address: str) -> str:
    """The address unchanged, or LimitError naming ADDRESS_MAX_CHARS."""
    if not isinstance(address, str):
        raise LimitError("住所 must be text")
    if len(address) > ADDRESS_MAX_CHARS:
        raise LimitError(f"住所 is {len(address)} characters; the card holds at most "
                         f"{ADDRESS_MAX_CHARS} (card ADDRESS_MAX_CHARS, spec §13.4)")
    return address
