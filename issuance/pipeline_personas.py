"""Pipeline personas: cards in the states testers need, made by running the real workflow.

Unlike the card-level personas of personas.py (one-shot issue_card, state poked into the image),
each persona here goes through the back office: 申請 → 受付/発行 → 交付 and then the step that
gives it its state, at `at` instants chosen relative to the persona's "now". The card image
is what the holder holds; the revocation state (hold, superseded, expiry) is in the store, so
`mynaemu issue ocsp-serve` and `mynaemu issue crl` answer for it.

    expired             a 15-year-old's 5-year card, issued 4 years 1 month before now: the card
                        and both certificates ended about a month ago (VAL-2, VAL-4, VAL-12)
    suspended           an adult card suspended by the call centre an hour ago after a matching
                        基本4情報 check: every certificate on hold (FLOW-SUSP-3)
    revoked-after-move  an adult who moved yesterday without bringing the card: the card still
                        holds the signing certificate revoked as superseded (MOV-1); auth good
    under15             a 12-year-old: auth certificate only (ELIG-2), PINs set by the legal
                        representative (ELIG-3)
    guardianship        an adult 成年被後見人: auth certificate only (ELIG-2)
    not-yet-valid       a card whose certificates are issued 30 days from now: before that the
                        CA has not issued them (OCSP unknown) and notBefore lies ahead

Test PINs (as personas.py): auth 1234, signing ABC123, 券面事項入力補助 1234, 住基 1234.
The default TEST CAs are valid 2015-01-01 .. 2049-12-31 (issuance/pki/ca.py).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import random

from mynaemu.card.image import CardImage

from mynaemu.issuance import policy
from mynaemu.issuance.personas import DEFAULT_PINS, synthetic_identity
from mynaemu.issuance.lifecycle.workflow import Basic4, Refused, Workflow

__all__ = ["PIPELINE_PERSONAS", "PipelinePersona", "build_pipeline_persona"]

PIPELINE_PERSONAS = {
    "expired": "card and certificates expired about a month ago (VAL-2, VAL-4, VAL-12)",
    "suspended": "suspended by the call centre an hour ago; certificates on hold (FLOW-SUSP-3)",
    "revoked-after-move": "moved yesterday; the card's signing certificate is revoked as superseded (MOV-1)",
    "under15": "12-year-old: auth certificate only, PINs set by the legal representative (ELIG-2, ELIG-3)",
    "guardianship": "成年被後見人: auth certificate only (ELIG-2)",
    "not-yet-valid": "certificates issued 30 days from now: not yet valid, OCSP unknown until then",
}

_COUNTER_CHECK = "counter photo-ID check (persona)"


@dataclasses.dataclass
class PipelinePersona:
    persona: str
    id: str
    image: CardImage
    pins: dict
    description: str


def _pins(with_sign: bool) -> dict:
    pins = dict(DEFAULT_PINS)
    if not with_sign:
        pins["sign"] = None
    return pins


def _apply_generate_deliver(wf: Workflow, rng: random.Random, *, age: int | None, at_issue: _dt.datetime,
                            birth: _dt.date | None = None, guardianship: bool = False,
                            pins_set_by: str | None = None, applied_at: _dt.datetime | None = None):
    identity = synthetic_identity(rng, age=age if age is not None else 30, on=policy.jst_date(at_issue))
    app_id = wf.apply(name=identity.name, birth=birth or identity.birth, sex=identity.sex, address=identity.address,
                      at=applied_at or at_issue - _dt.timedelta(days=7), guardianship=guardianship)
    result = wf.generate(app_id, at=at_issue)
    with_sign = result.sign_serial is not None
    image = wf.deliver(app_id, at=at_issue + _dt.timedelta(days=1), pins=_pins(with_sign),
                       identity_check=_COUNTER_CHECK, pins_set_by=pins_set_by)
    return app_id, image, identity, with_sign


def build_pipeline_persona(wf: Workflow, name: str, *, at: _dt.datetime, seed: int | None = None) -> PipelinePersona:
    """Run the workflow so that, as of `at`, the card of persona `name` is in its state."""
    if name not in PIPELINE_PERSONAS:
        raise ValueError(f"unknown persona {name!r}; choose from: {', '.join(PIPELINE_PERSONAS)}")
    if at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    # one stream per persona, so two personas of one seed are different people
    rng = random.Random(f"{seed}/{name}") if seed is not None else random.Random()
    now = at.astimezone(_dt.timezone.utc).replace(microsecond=0)
    today = policy.jst_date(now)
    description = PIPELINE_PERSONAS[name]

    if name == "expired":
        # Issue 4 years 1 month ago to someone turning 16 the next day: the 5-year card ends on
        # the 5th birthday after issue (D1), i.e. issue + 4 years + 1 day (VAL-2).
        issue_day = policy.add_months(today, -49)
        birthday = issue_day + _dt.timedelta(days=1)
        birth = policy.add_months(birthday, -16 * 12)
        pki_start = policy.jst_date(wf.pki.auth_ca.certificate.not_valid_before_utc) + _dt.timedelta(days=8)
        if issue_day < pki_start:
            raise Refused(f"the expired persona is issued 4 years 1 month before --at, but the TEST CAs "
                          f"start on {pki_start.isoformat()}; use --at {policy.add_months(pki_start, 49)} or later")
        at_issue = _dt.datetime.combine(issue_day, _dt.time(10, 0), tzinfo=policy.JST)
        app_id, image, _, with_sign = _apply_generate_deliver(wf, rng, age=None, birth=birth, at_issue=at_issue)
    elif name == "suspended":
        at_issue = now - _dt.timedelta(days=30)
        app_id, image, identity, with_sign = _apply_generate_deliver(wf, rng, age=41, at_issue=at_issue)
        person = wf.status(app_id, at=now, audited=False)["holder"]
        wf.suspend(app_id, at=now - _dt.timedelta(hours=1),
                   caller=Basic4(person["name"], _dt.date.fromisoformat(person["birth"]), person["sex"],
                                 person["address"]))
    elif name == "revoked-after-move":
        at_issue = now - _dt.timedelta(days=60)
        app_id, image, identity, with_sign = _apply_generate_deliver(wf, rng, age=35, at_issue=at_issue)
        # The holder has not brought the card: it keeps the superseded signing certificate.
        wf.move(app_id, at=now - _dt.timedelta(days=1), address=identity.address.replace("丁目", "丁目東", 1)
                if "丁目" in identity.address else identity.address + "東")
    elif name == "under15":
        app_id, image, _, with_sign = _apply_generate_deliver(wf, rng, age=12, at_issue=now - _dt.timedelta(days=7),
                                                              pins_set_by="legal_representative")
    elif name == "guardianship":
        app_id, image, _, with_sign = _apply_generate_deliver(wf, rng, age=52, at_issue=now - _dt.timedelta(days=7),
                                                              guardianship=True)
    else:  # not-yet-valid
        # applied yesterday; 発行 and 交付 lie 30 and 31 days ahead
        app_id, image, _, with_sign = _apply_generate_deliver(wf, rng, age=29, at_issue=now + _dt.timedelta(days=30),
                                                              applied_at=now - _dt.timedelta(days=1))
    image.label = name
    image.meta["persona"] = name
    return PipelinePersona(name, app_id, image, _pins(with_sign), description)
