"""The store's applications and cards: the form, the card's state and its events, delivery (STATE-1, STATE-3)."""
from __future__ import annotations

import datetime as _dt
import secrets

from mynaemu.issuance.store.forms import make_form_id
from mynaemu.issuance.store.values import CARD_STATES, iso


class CardsTable:
    """Table group `applications`, `cards`, `card_events`, `deliveries`."""

    # --- applications and cards -------------------------------------------------------------
    def application(self, app_id: str):
        return self.conn.execute("SELECT * FROM applications WHERE id = ?", (app_id,)).fetchone()

    def card(self, app_id: str):
        return self.conn.execute("SELECT * FROM cards WHERE application_id = ?", (app_id,)).fetchone()

    def cards_of_person(self, person_id: int) -> list:
        return self.conn.execute("SELECT * FROM cards WHERE person_id = ? ORDER BY seq",
                                 (person_id,)).fetchall()

    def application_ids(self, states=None) -> list[str]:
        if states is None:
            rows = self.conn.execute("SELECT application_id FROM cards ORDER BY seq")
        else:
            marks = ", ".join("?" for _ in states)
            rows = self.conn.execute(f"SELECT application_id FROM cards WHERE state IN ({marks}) "
                                     "ORDER BY seq", tuple(states))
        return [r[0] for r in rows]

    def new_form_id(self, column: str = "application") -> str:
        while True:
            candidate = make_form_id()
            if column == "application":
                hit = self.conn.execute("SELECT 1 FROM applications WHERE id = ?", (candidate,)).fetchone()
            else:
                hit = self.conn.execute("SELECT 1 FROM cards WHERE notice_id = ?", (candidate,)).fetchone()
            if hit is None:
                return candidate

    def new_card_serial(self) -> str:
        while True:
            serial = f"{secrets.randbelow(10**15):015d}"
            if self.conn.execute("SELECT 1 FROM cards WHERE serial = ?", (serial,)).fetchone() is None:
                return serial

    def set_card_state(self, app_id: str, to_state: str, *, at: _dt.datetime, operation: str,
                       audit_id: int | None) -> None:
        if to_state not in CARD_STATES:
            raise ValueError(f"unknown card state {to_state!r}")
        row = self.card(app_id)
        self.conn.execute("UPDATE cards SET state = ?, last_change_at = ? WHERE application_id = ?",
                          (to_state, iso(at), app_id))
        self.conn.execute("INSERT INTO card_events (application_id, at, from_state, to_state, operation,"
                          " audit_id) VALUES (?, ?, ?, ?, ?, ?)",
                          (app_id, iso(at), row["state"] if row else None, to_state, operation, audit_id))

    def card_events(self, app_id: str) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT at, from_state, to_state, operation FROM card_events WHERE application_id = ? "
            "ORDER BY id", (app_id,))]

    def last_change_at(self, app_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT max(at) FROM (SELECT at FROM card_events WHERE application_id = ? "
            "UNION ALL SELECT e.at FROM cert_events e JOIN certificates c ON c.id = e.cert_id "
            "WHERE c.application_id = ?) AS changes", (app_id, app_id)).fetchone()
        return row[0]

    # --- the steps' writes (the workflow runs no SQL of its own) -------------------------------
    def insert_application(self, app_id: str, person_id: int, *, kind: str, replaces: str | None,
                           decline_sign: bool, alt_confirmed: bool, at: _dt.datetime,
                           audit_id: int | None) -> None:
        """申請: the form, its card in state 'applied', and that first card event."""
        self.conn.execute(
            "INSERT INTO applications (id, person_id, kind, replaces, decline_sign, alt_confirmed, applied_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (app_id, person_id, kind, replaces, int(decline_sign), int(alt_confirmed), iso(at)))
        self.conn.execute("INSERT INTO cards (application_id, person_id, state, last_change_at) "
                          "VALUES (?, ?, 'applied', ?)", (app_id, person_id, iso(at)))
        self.conn.execute("INSERT INTO card_events (application_id, at, from_state, to_state, operation,"
                          " audit_id) VALUES (?, ?, NULL, 'applied', ?, ?)",
                          (app_id, iso(at), kind, audit_id))

    def set_received(self, app_id: str, at: _dt.datetime) -> None:
        self.conn.execute("UPDATE applications SET received_at = ? WHERE id = ?", (iso(at), app_id))

    def record_personalisation(self, app_id: str, *, serial: str, starts: str, expires: str,
                               security_code: str, notice_id: str, at: _dt.datetime) -> None:
        """発行: the card's serial, validity, security code and 交付通知書 id."""
        self.conn.execute(
            "UPDATE cards SET serial = ?, starts = ?, expires = ?, security_code = ?, notice_id = ?, "
            "personalised_at = ? WHERE application_id = ?",
            (serial, starts, expires, security_code, notice_id, iso(at), app_id))

    def record_delivery(self, app_id: str, *, at: _dt.datetime, identity_check: str, pins_set_by: str,
                        proxy_json: str | None, notification_card_collected: bool) -> None:
        """交付: what was checked at the counter (STATE-3 item 7), and the card's handover instant."""
        self.conn.execute("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?)",
                          (app_id, iso(at), identity_check, pins_set_by, proxy_json,
                           int(notification_card_collected)))
        self.conn.execute("UPDATE cards SET delivered_at = ? WHERE application_id = ?", (iso(at), app_id))

    def set_card_image(self, app_id: str, image_json: str | None) -> None:
        """The chip image kept until 交付 (None drops it)."""
        self.conn.execute("UPDATE cards SET image = ? WHERE application_id = ?", (image_json, app_id))

    def set_replaced_by(self, app_id: str, new_id: str) -> None:
        self.conn.execute("UPDATE cards SET replaced_by = ? WHERE application_id = ?", (new_id, app_id))

    def pending_replacement(self, app_id: str):
        """(application id, state) of a replacement of `app_id` still on its way, or None."""
        return self.conn.execute(
            "SELECT c.application_id, c.state FROM applications a JOIN cards c ON c.application_id = a.id "
            "WHERE a.replaces = ? AND c.state IN ('applied', 'received', 'issued', 'awaiting_delivery')",
            (app_id,)).fetchone()

    # --- what the kiosk's checks read (kiosk/trust.py) -----------------------------------------
    def card_state_row(self, app_id: str):
        return self.conn.execute("SELECT state, expires, serial, application_id FROM cards WHERE application_id = ?",
                                 (app_id,)).fetchone()

    def card_state_by_serial(self, person_id: int, serial: str):
        return self.conn.execute("SELECT state, expires, serial, application_id FROM cards WHERE person_id = ? AND serial = ?",
                                 (person_id, str(serial))).fetchone()

    def newest_card_state(self, person_id: int, states) -> object:
        """The newest (by creation) of the person's cards in one of `states`."""
        marks = ", ".join("?" for _ in states)
        return self.conn.execute(
            f"SELECT state, expires, serial, application_id FROM cards WHERE person_id = ? AND state IN ({marks}) "
            "ORDER BY seq DESC LIMIT 1", (person_id, *states)).fetchone()
