"""File identifiers, key references and PIN references of every application, as enums.

One enum per application and kind (EF, key, PIN), values as the card answers to them in
SELECT EF `00 A4 02 0C 02 FID` (§2.3), the SFI forms (§2.4) and VERIFY (§4.2). Members are
ints (IntEnum), so `f"{fid:04X}"`, dict keys and `fid.to_bytes(2, "big")` work unchanged.

The application modules (card/apps/*.py) build their DFs from these; the terminal client,
describe, the harnesses and the benches name files through them. Which secret opens which EF
stays with each application (its ACCESS table, spec §4.3).
"""
from __future__ import annotations

import enum


# -- 公的個人認証AP (JPKI-AP): spec §3.1, §4.1 ---------------------------------------------------

class JpkiEF(enum.IntEnum):
    SIGN_CERT = 0x0001      # 署名用電子証明書 (needs 001B)
    SIGN_CA = 0x0002        # 署名用CA証明書
    TOKEN = 0x0006          # token information (CK_TOKEN_INFO)
    AVAILABILITY = 0x0008   # certificate availability
    PROTECTED = 0x0009      # protected, purpose unknown
    AUTH_CERT = 0x000A      # 利用者証明用電子証明書 (free)
    AUTH_CA = 0x000B        # 利用者証明用CA証明書


class JpkiKey(enum.IntEnum):
    INTERNAL = 0x0010       # key reference, purpose unknown
    TERMINAL_CA = 0x0016    # terminal-CA key reference (80 A2)
    AUTH = 0x0017           # 利用者証明用秘密鍵
    SIGN = 0x001A           # 署名用秘密鍵


class JpkiPin(enum.IntEnum):
    AUTH = 0x0018           # 利用者証明用暗証番号
    SIGN = 0x001B           # 署名用パスワード


# EFs that exist, use unknown (§13.3, JSAPDU UNKNOWN_*)
JPKI_UNKNOWN_EFS = (0x0005, 0x0019, 0x001C, 0x001E)


# -- 券面事項入力補助AP (kenhojo): spec §3.2, §4.1, §4.3 -----------------------------------------

class KenhojoEF(enum.IntEnum):
    MY_NUMBER = 0x0001      # 個人番号
    BASIC4 = 0x0002         # 基本4情報
    INTEGRITY = 0x0003      # digests + signature
    CVC = 0x0004            # this AP's card-verifiable certificate
    AP_INFO = 0x0005        # AP basic info
    SESSION_KEY = 0x0006    # session-key encryption public key (§13.2)
    AP_PUBLIC_KEY = 0x0007  # public half of key 0013, signed
    UNKNOWN_0008 = 0x0008   # 16 x FF, purpose unknown


class KenhojoKey(enum.IntEnum):
    AP = 0x0013             # the AP's own signing key (no PIN)


class KenhojoPin(enum.IntEnum):
    MAIN = 0x0011           # 券面事項入力補助用暗証番号
    BLOCKED = 0x0012        # blocked as issued
    A = 0x0014              # 照合番号A (= 個人番号)
    B = 0x0015              # 照合番号B (14 digits)


# §13.3: EFs that exist though their use is unknown (SELECT 9000, content refused).
KENHOJO_UNKNOWN_EFS = (0x0010, 0x001C, 0x001E)


# -- 券面事項確認AP (kenkaku): spec §3.3, §4.3 ---------------------------------------------------

class KenkakuEF(enum.IntEnum):
    AGE = 0x0001            # age-verification record
    FACE = 0x0002           # card face
    AP_INFO = 0x0003        # AP basic info
    CVC = 0x0004
    NUMBER_IMAGE = 0x0005   # rendered 個人番号
    UNKNOWN_0006 = 0x0006   # 16 x FF, purpose unknown


class KenkakuKey(enum.IntEnum):
    CARD = 0x001A           # the AP's own signing key (no PIN)


class KenkakuPin(enum.IntEnum):
    BIRTH = 0x0011          # 生年月日 key: era YYMMDD
    B = 0x0012              # 照合番号B
    A = 0x0013              # 照合番号A


# §13.3: exist, purpose unknown (SELECT 9000, content refused)
KENKAKU_UNKNOWN_EFS = (0x001C, 0x001E)


# -- 共通カードAP and 住基AP: spec §3.4, §13.3 ----------------------------------------------------

class CommonEF(enum.IntEnum):
    CARD_INFO = 0x0001      # record EF, record 1 = card info
    KEY_REFERENCE = 0x0002  # 16-byte key reference (the same in the 住基AP)


class CommonKey(enum.IntEnum):
    AUTH = 0x0019           # INTERNAL AUTHENTICATE key


class CommonPin(enum.IntEnum):
    PIN = 0x001C            # 住民基本台帳用暗証番号 (and its twin in the 住基AP)


class JukiEF(enum.IntEnum):
    RECORD = 0x0001         # record EF, content unidentified on the card (§13.3); [U] 住民票コード
    KEY_REFERENCE = 0x0002  # = CommonEF.KEY_REFERENCE


class JukiPin(enum.IntEnum):
    PIN = 0x001C            # = CommonPin.PIN


# -- the TEST 条例利用 AP (card/apps/jorei.py) -----------------------------------------------------

class JoreiEF(enum.IntEnum):
    USER_ID = 0x0001
    DOCUMENTS = 0x0002


class JoreiPin(enum.IntEnum):
    JUMINHYO = 0x0011       # 住民票の写し交付用暗証番号
    INKAN = 0x0012          # 印鑑登録証明書交付用暗証番号
    ZEI = 0x0013            # 税証明書交付用暗証番号


# -- the MF: spec §2.2 ---------------------------------------------------------------------------

class MfEF(enum.IntEnum):
    INTERNAL = 0x001E       # selects, but READ gives 6981
