"""Personas: ready-made synthetic cards in the states testers need (issue "card" item 7).

`build_persona(name, seed=None, at=None)` issues a card through the same path the back office
uses (policy → keys → TEST CAs → personalisation) and then puts it into the persona's state.
With a seed the identity and every key are reproducible; without one they are random.
Identities are synthetic (names from a fixed list of obviously invented ones, addresses in a
fictional 町), 個人番号 derived from the 住民票コード with a valid check digit (rules.md §20 M2).

Test PINs (documented in the README): auth 1234, signing ABC123, 券面事項入力補助 1234,
住基/共通 1234.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import random
from typing import Callable

from mynaemu.card.image import CardImage

from mynaemu.issuance import policy
from mynaemu.issuance.identity import Identity, era_yymmdd
from mynaemu.issuance.pki.keys import derive_rng
from mynaemu.issuance.numbering import individual_number_from_juminhyo_code

DEFAULT_PINS = {"auth": "1234", "sign": "ABC123", "kenhojo": "1234", "juki": "1234"}
# The key that derives persona 個人番号 from 住民票コード: TEST only, public on purpose.
PERSONA_NUMBER_SECRET = b"mynaemu TEST persona numbering"

_FAMILY = ["番号", "試験", "見本", "仮名", "模擬", "検証", "架空", "例示"]
_GIVEN = {"1": ["太郎", "一郎", "健太", "翔"], "2": ["花子", "桜", "美咲", "陽菜"]}
_TOWNS = ["試験町", "見本町", "架空町", "検証町"]


@dataclasses.dataclass(frozen=True)
class PersonaSpec:
    description: str
    age: int                      # completed years on the issue day
    with_sign: bool = True
    guardianship: bool = False
    state: Callable[[CardImage], None] | None = None
    long_address: bool = False    # 住所 with building and room: kenhojo EF 0002 over 127 bytes


@dataclasses.dataclass
class PersonaInfo:
    persona: str
    identity: Identity
    pins: dict
    shogo_b: str                  # 照合番号B (spec §4.3)
    security_code: str
    card_expiry: _dt.date
    issued: _dt.date
    auth_serial: int
    sign_serial: int | None


def _block(app: str, fid: int, remaining: int = 0):
    def apply(image: CardImage) -> None:
        image.pin(app, fid).remaining = remaining
    return apply


def _token(label: str, auth_cert_behind_pin: bool = False):
    """A smartphone JPKI (spec §3.1, §8, §13.3): EF 0006 carries the phone's token label; on the
    Android GP-SE variant the user-authentication certificate EF 000A needs the auth PIN.

    Decision: a phone carries the JPKI-AP only (the smartphone 電子証明書 is the JPKI-AP protocol,
    §8; myna-go skips the 券面 APs for a GP-SE token, §10.3), so the other APs answer 6A82 and
    there are no MF GET DATA objects (6A88)."""
    def apply(image: CardImage) -> None:
        from mynaemu.card.apps import jpki
        image.applications = [a for a in image.applications if a.name == "jpki"]
        image.get_data = {}
        app = image.application("jpki")
        token = app.efs[jpki.EF_TOKEN]
        token.data = label.encode("ascii").ljust(32, b" ") + token.data[32:]
        if auth_cert_behind_pin:
            app.efs[jpki.EF_AUTH_CERT].read = (jpki.PIN_AUTH,)
    return apply


PERSONAS: dict[str, PersonaSpec] = {
    "adult": PersonaSpec("45-year-old holder, every AP, auth + signing certificates", 45),
    "under15": PersonaSpec("12-year-old: auth certificate only, EF 0008 says no signing "
                           "certificate (ELIG-2), signing PIN never set", 12, with_sign=False),
    "auth-locked": PersonaSpec("adult whose user-authentication PIN (0018) is blocked: "
                               "query 63C0, VERIFY 6984", 45, state=_block("jpki", 0x0018)),
    "sign-1-left": PersonaSpec("adult with one signing-password try left (001B: 63C1)", 38,
                               state=_block("jpki", 0x001B, 1)),
    "kenkaku-b-locked": PersonaSpec("adult whose 券面AP 照合番号B (0012) is blocked after 10 "
                                    "misses", 52, state=_block("kenkaku", 0x0012)),
    "long-address": PersonaSpec("adult whose 住所 has a building and room (over 40 full-width "
                                "characters): kenhojo EF 0002 over 127 bytes, BER long-form "
                                "length FF 20 81 LL (§13.4)", 41, long_address=True),
    "smartphone": PersonaSpec("Android smartphone JPKI: EF 0006 token JPKIAPGPSETOKEN, auth "
                              "certificate EF 000A readable only after the auth PIN (§13.3)", 33,
                              state=_token("JPKIAPGPSETOKEN", auth_cert_behind_pin=True)),
    "iphone": PersonaSpec("iPhone JPKI: EF 0006 token JPKIAPIOSTOKEN (§13.3)", 29,
                          state=_token("JPKIAPIOSTOKEN")),
}

# Invented building names for the long-address persona (synthetic, like the towns).
_BUILDINGS = ["試験レジデンス清瀬ガーデンコート", "見本ハイツ清瀬中央ステーションタワー",
              "架空コーポラス清瀬第二サンプルマンション"]


def synthetic_identity(rng: random.Random, *, age: int, on: _dt.date,
                       long_address: bool = False) -> Identity:
    """A made-up holder aged `age` on `on`; long_address adds a building, wing and room."""
    sex = rng.choice(["1", "2"])
    name = f"{rng.choice(_FAMILY)}\u3000{rng.choice(_GIVEN[sex])}"
    # Birth: `age` completed years on `on`, at least one day after the last birthday.
    birth_year = on.year - age - 1
    start = _dt.date(birth_year, 1, 1)
    while True:
        birth = start + _dt.timedelta(days=rng.randrange(365))
        if policy.age_on(birth, on) == age:
            break
    digits = "０１２３４５６７８９"
    n1, n2, n3 = rng.randrange(1, 10), rng.randrange(1, 30), rng.randrange(1, 20)
    address = (f"東京都清瀬市{rng.choice(_TOWNS)}{digits[n1]}丁目"
               f"{''.join(digits[int(c)] for c in str(n2))}番"
               f"{''.join(digits[int(c)] for c in str(n3))}号")
    if long_address:
        room = "".join(digits[int(c)] for c in str(rng.randrange(101, 2000)))
        address += f"\u3000{rng.choice(_BUILDINGS)}Ｃ棟{room}号室"
    juminhyo = "".join(str(rng.randrange(10)) for _ in range(11))
    number = individual_number_from_juminhyo_code(juminhyo, PERSONA_NUMBER_SECRET)
    return Identity(name=name, address=address, birth=birth, sex=sex, individual_number=number,
                    juminhyo_code=juminhyo, municipality_code="13221",
                    prefecture_romaji="Tokyo-to", city_romaji="Kiyose-shi")


def build_persona(name: str, seed: int | None = None, at: _dt.datetime | None = None):
    """(CardImage, PersonaInfo) for persona `name`, issued on `at` (default: now).

    A seeded persona is reproducible, and built once per process: later calls get a fresh
    copy of the same image (deterministic key generation is the slow part).
    """
    if seed is None:
        return _build_persona(name, None, at)
    at = at or _dt.datetime.now(_dt.timezone.utc)
    key = (name, seed, policy.jst_date(at))
    if key not in _SEEDED:
        image, info = _build_persona(name, seed, at)
        _SEEDED[key] = (image.to_json(), info)
    doc, info = _SEEDED[key]
    return CardImage.from_json(doc), dataclasses.replace(info, pins=dict(info.pins))


_SEEDED: dict = {}


def _build_persona(name, seed, at):
    from mynaemu.issuance.personalise import issue_card  # late: pulls in the PKI

    if name not in PERSONAS:
        raise ValueError(f"unknown persona {name!r}; choose from: {', '.join(PERSONAS)}")
    spec = PERSONAS[name]
    at = at or _dt.datetime.now(_dt.timezone.utc)
    today = policy.jst_date(at)
    rng = derive_rng(seed, f"persona/{name}") if seed is not None else random.Random()
    identity = synthetic_identity(rng, age=spec.age, on=today, long_address=spec.long_address)
    security_code = f"{rng.randrange(10000):04d}"
    issued = issue_card(identity, at=at, pins=DEFAULT_PINS, security_code=security_code,
                        with_sign=spec.with_sign, guardianship=spec.guardianship,
                        rng=rng if seed is not None else None, label=name)
    image = issued.image
    if spec.state:
        spec.state(image)
    image.meta["persona"] = name
    info = PersonaInfo(
        persona=name, identity=identity, pins=dict(DEFAULT_PINS),
        shogo_b=era_yymmdd(identity.birth) + f"{issued.card_expiry.year:04d}" + security_code,
        security_code=security_code, card_expiry=issued.card_expiry, issued=today,
        auth_serial=issued.auth_cert.serial_number,
        sign_serial=issued.sign_cert.serial_number if issued.sign_cert else None)
    return image, info
