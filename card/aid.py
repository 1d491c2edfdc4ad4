"""The AIDs (DF names) of every application on the card, as one enum (spec card-interface.md §2.1).

Members are bytes: `AID.JPKI == bytes.fromhex("D392F000260100000001")`, they hash like bytes and
go straight into a SELECT `00 A4 04 0C Lc AID` (§2.2). The card's APs (card/apps/*.py), the
card core (the ISD), the terminal client and the benches all name an AID through this enum;
nothing else writes one as literal hex.
"""
from __future__ import annotations

import enum


@enum.unique
class AID(bytes, enum.Enum):
    JPKI = bytes.fromhex("D392F000260100000001")      # 公的個人認証AP (JPKI-AP), §2.1
    KENHOJO = bytes.fromhex("D3921000310001010408")   # 券面事項入力補助AP (text AP), §2.1, §3.2
    KENKAKU = bytes.fromhex("D3921000310001010402")   # 券面事項確認AP (visual AP), §2.1, §3.3
    JUKI = bytes.fromhex("D3921000310001010401")      # 住基AP, §2.1
    COMMON = bytes.fromhex("D3921000310001010100")    # 共通カードAP, §2.1, §3.4
    # GlobalPlatform Issuer Security Domain, current at power-up (§2.1).
    ISD = bytes.fromhex("A0000001510000")
    # The TEST 条例利用 AP (card/apps/jorei.py): F0 (the ISO/IEC 7816-4 proprietary-AID range,
    # never registered) + ASCII "MYNAEMU-TEST-JR", 16 bytes.
    JOREI = b"\xF0" + b"MYNAEMU-TEST-JR"

    @property
    def label(self) -> str:
        """The lower-case short name clients use ("jpki", "kenhojo", ...)."""
        return self.name.lower()

