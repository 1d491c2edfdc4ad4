"""pytest plugin (entry point `pytest11: mynaemu`): virtual Individual Number Cards as fixtures.

Active in any project where mynaemu is installed; nothing of mynaemu is imported until a test
asks for one of these fixtures (this module imports only pytest), so unused it costs nothing.

- `myna_card` — a factory: `myna_card("adult")` (any persona of `mynaemu card personas`) or
  `myna_card(path_to_image)` gives a fresh in-process card: `.transmit(bytes) -> bytes`,
  `.reset(warm=True)`, `.image_path` (its own copy, PIN state written there), `.pins`
  ({"auth": "1234", ...}), `.atr`, `.variables` (the card-script variables) and
  `.run_script(path)` (a card script, vectors/transcripts/README.md; raises on a mismatch).
- `myna_reader` — the name of a PC/SC reader holding an adult persona card, served through
  pcscd + vpcd for the test (another persona: `@pytest.mark.parametrize("myna_reader",
  ["under15"], indirect=True)`). Skips with the reason when pcscd, the vpcd driver or pyscard
  is missing, when both vpcd slots are taken, or when a pcscd without the vpcd reader is running
  (that is the daemon serving your real readers; it is never stopped or restarted).
- `myna_office` — a TEST back office in a temporary home: `.home`, `.workflow`, `.store`,
  `.issue_card(**identity) -> Path` (申請 → 発行 → 交付 with the test PINs), `.env` (the
  environment for `mynaemu issue/kiosk` subprocesses, with the credentials of an all-rights
  staff account `myna-office` that `mynaemu issue` commands need).

Fixture names all start with `myna_` so they never shadow a project's own.
"""
from __future__ import annotations

import pytest


class MynaCard:
    """A fresh in-process card on its own image file."""

    def __init__(self, image_path, image, info=None):
        from mynaemu.card.core import Card

        self.image_path = image_path
        self._card = Card(image, persist=lambda img: img.save(image_path))
        self.atr = self._card.power_on()
        secrets = image.meta.get("secrets") or {}
        self.pins = dict(info.pins if info is not None else secrets.get("pins") or {})
        self._info = info

    @property
    def card(self):
        """The mynaemu.card.core.Card underneath (its `.image` is the live card image)."""
        return self._card

    def transmit(self, apdu: bytes) -> bytes:
        return self._card.transmit(bytes(apdu))

    def reset(self, warm: bool = True) -> bytes:
        """Warm reset keeps the security status, cold reset (power cycle) clears it (spec §4.5)."""
        self.atr = self._card.reset(warm=warm)
        return self.atr

    @property
    def variables(self) -> dict:
        from mynaemu.tools.terminal.script_targets import image_env, persona_env

        image = self._card.image
        return persona_env(image, self._info) if self._info is not None else image_env(image)

    def run_script(self, path, **variables) -> int:
        """Run a card script on this card (state carries over); return the number of exchanges."""
        from mynaemu.tools.terminal.script import parse_transcript, run_script
        from mynaemu.tools.terminal.script_targets import persona_keys

        script = parse_transcript(path, require_persona=False)
        return run_script(script, self, {**self.variables, **variables}, persona_keys(self._card.image))


@pytest.fixture
def myna_card(tmp_path_factory):
    """Factory: myna_card("adult") or myna_card(image_path) -> a fresh in-process MynaCard."""
    import os

    def make(what, *, seed: int = 0) -> MynaCard:
        from mynaemu.card.image import CardImage

        directory = tmp_path_factory.mktemp("myna_card")
        os.chmod(directory, 0o700)
        if isinstance(what, (str,)) and not os.path.sep in what and not what.endswith(".json"):
            from mynaemu.tools.terminal.script_targets import persona_card

            image, info = persona_card(what, seed)
            path = directory / f"{what}.json"
            image.save(path)
            return MynaCard(path, image, info)
        image = CardImage.load(what)                 # one-line CardImageError on a broken file
        path = directory / os.path.basename(str(what))
        image.save(path)
        return MynaCard(path, image)

    return make


@pytest.fixture
def myna_reader(request, tmp_path_factory):
    """The name of a PC/SC reader holding a persona card (default adult) for this test."""
    from mynaemu.tools.harness import pcscd as pcscd_ctl

    missing = pcscd_ctl.missing_tools()
    if missing:
        pytest.skip("PC/SC stack not installed: " + ", ".join(missing))
    try:
        daemon = pcscd_ctl.ensure_pcscd()
    except pcscd_ctl.ForeignPcscd as exc:
        pytest.skip(str(exc))
    except pcscd_ctl.PcscdError as exc:
        pytest.skip(f"cannot bring up pcscd: {exc}")
    persona = getattr(request, "param", "adult")
    server = None
    try:
        from mynaemu.issuance.personas import build_persona

        image, _info = build_persona(persona, seed=0)
        directory = tmp_path_factory.mktemp("myna_reader")
        path = directory / f"{persona}.json"
        image.save(path)
        for port in pcscd_ctl.vpcd_ports():
            if pcscd_ctl.reader_state(pcscd_ctl.reader_for_port(port))[0]:
                continue
            try:
                server = pcscd_ctl.start_card_server(path, port=port, in_process=True)
                break
            except pcscd_ctl.PcscdError:
                continue
        if server is None:
            pytest.skip("every vpcd reader already holds a card")
        yield server.reader
    finally:
        if server is not None:
            server.stop()
        daemon.stop()


class MynaOffice:
    """A TEST back office (SQLite store, TEST CAs) in its own temporary home."""

    def __init__(self, home):
        self.home = home
        self._store = None
        self._workflow = None
        self._password = None
        self.cards = 0

    @property
    def store(self):
        if self._store is None:
            from mynaemu.issuance.store import Store
            self._store = Store.open(self.home)
        return self._store

    @property
    def workflow(self):
        if self._workflow is None:
            from mynaemu.issuance.lifecycle.workflow import Workflow
            self._workflow = Workflow(self.store, operator="pytest", terminal="myna_office")
        return self._workflow

    @property
    def env(self) -> dict:
        """MYNAEMU_HOME and the credentials of the office's all-rights account (issue 13)."""
        import os
        import secrets

        if self._password is None:
            from mynaemu.tools.harness.staff import all_rights_account

            self._password = "Myna-" + secrets.token_urlsafe(18)
            all_rights_account(self.store, "myna-office", self._password, terminal="myna_office")
        return {**os.environ, "MYNAEMU_HOME": str(self.home), "MYNAEMU_OPERATOR": "myna-office",
                "MYNAEMU_PASSWORD": self._password}

    def issue_card(self, *, name: str = "試験　花子", birth=None, sex: str = "2",
                   address: str = "東京都清瀬市試験町１丁目２番３号", at=None, pins=None):
        """申請 → 鍵ペア生成/証明書発行 → 交付 (FLOW-1) on the office clock; the card image path."""
        import datetime as _dt

        from mynaemu.issuance.personas import DEFAULT_PINS

        at = at or _dt.datetime.now(_dt.timezone.utc)
        birth = birth or _dt.date(1990, 4, 1)
        wf = self.workflow
        app_id = wf.apply(name=name, birth=birth, sex=sex, address=address, at=at - _dt.timedelta(days=9))
        wf.generate(app_id, at=at - _dt.timedelta(days=2))
        self.cards += 1
        path = self.home / f"card-{self.cards}.json"
        wf.deliver(app_id, at=at - _dt.timedelta(days=1), pins=dict(pins or DEFAULT_PINS),
                   identity_check="myna_office fixture", write=lambda img: img.save(path))
        return path

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


@pytest.fixture
def myna_office(tmp_path_factory):
    """A TEST back office in a temporary home (0700), closed after the test."""
    import os

    home = tmp_path_factory.mktemp("myna_office")
    os.chmod(home, 0o700)
    office = MynaOffice(home)
    yield office
    office.close()
