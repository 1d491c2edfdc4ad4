"""The store's certificates and their status history, and the revocation answers built from them (STATE-2)."""
from __future__ import annotations

import datetime as _dt
import secrets

from mynaemu.issuance.store.errors import StoreConflict
from mynaemu.issuance.store.values import CERT_EVENTS, REVOCATION_REASONS, iso, parse_iso


class CertificatesTable:
    """Table group `certificates`, `cert_events`; the store as a RevocationSource."""

    # --- certificates (STATE-2) -------------------------------------------------------------
    def serial_taken(self, ca_kind: str, serial: int) -> bool:
        return self.conn.execute("SELECT 1 FROM certificates WHERE ca_kind = ? AND serial = ?",
                                 (ca_kind, serial)).fetchone() is not None

    def new_cert_serial(self, ca_kind: str) -> int:
        """A random 4-octet serial (profiles.SERIAL_MIN..SERIAL_MAX, §13.3) unused by this CA.

        UNIQUE (ca_kind, serial) is the guarantee: a serial two transactions drew at once makes
        the second insert_certificate a StoreConflict, and the workflow runs it again."""
        from mynaemu.issuance.pki.profiles import SERIAL_MAX, SERIAL_MIN

        while True:
            serial = SERIAL_MIN + secrets.randbelow(SERIAL_MAX - SERIAL_MIN + 1)
            if not self.serial_taken(ca_kind, serial):
                return serial

    def insert_certificate(self, app_id: str, ca_kind: str, certificate, issue_id: str, *,
                           at: _dt.datetime, audit_id: int | None) -> int:
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            cert_id = self.conn.execute(
                "INSERT INTO certificates (application_id, ca_kind, serial, issue_id, not_before, not_after,"
                " der, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'good')",
                (app_id, ca_kind, certificate.serial_number, issue_id, iso(certificate.not_valid_before_utc),
                 iso(certificate.not_valid_after_utc), certificate.public_bytes(Encoding.DER)),
            ).lastrowid
        except self.IntegrityError as exc:
            if "serial" not in str(exc):
                raise
            # UNIQUE (ca_kind, serial): a concurrent transaction drew the same serial after
            # new_cert_serial looked; nothing is written, the workflow runs the whole one again
            raise StoreConflict(f"{self.where}: {ca_kind} serial {certificate.serial_number:08X} "
                                "is taken; run the transaction again") from None
        self.cert_event(cert_id, "issued", at=at, reason=None, audit_id=audit_id)
        return cert_id

    def cert_event(self, cert_id: int, event: str, *, at: _dt.datetime, reason: str | None,
                   audit_id: int | None) -> None:
        if event not in CERT_EVENTS:
            raise ValueError(f"unknown certificate event {event!r}")
        if event == "revoked" and reason not in REVOCATION_REASONS:
            raise ValueError(f"revocation reason must be one of {', '.join(REVOCATION_REASONS)}")
        status = {"issued": "good", "hold": "hold", "released": "good", "revoked": "revoked"}[event]
        self.conn.execute("UPDATE certificates SET status = ? WHERE id = ?", (status, cert_id))
        self.conn.execute("INSERT INTO cert_events (cert_id, at, event, reason, audit_id) VALUES (?, ?, ?, ?, ?)",
                          (cert_id, iso(at), event, reason, audit_id))

    def certificates_of(self, app_id: str, *, include_revoked: bool = True) -> list:
        sql = "SELECT * FROM certificates WHERE application_id = ?"
        if not include_revoked:
            sql += " AND status <> 'revoked'"
        return self.conn.execute(sql + " ORDER BY id", (app_id,)).fetchall()

    def current_certificate(self, app_id: str, ca_kind: str):
        """The newest certificate of that kind on the card (None when it never had one)."""
        return self.conn.execute("SELECT * FROM certificates WHERE application_id = ? AND ca_kind = ? "
                                 "ORDER BY id DESC LIMIT 1", (app_id, ca_kind)).fetchone()

    def certificate_by_serial(self, ca_kind: str, serial: int):
        return self.conn.execute("SELECT * FROM certificates WHERE ca_kind = ? AND serial = ?",
                                 (ca_kind, serial)).fetchone()

    def cert_events(self, cert_id: int) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT at, event, reason FROM cert_events WHERE cert_id = ? ORDER BY id", (cert_id,))]

    def status_at(self, cert_row, at: _dt.datetime) -> dict:
        """The certificate's status as of instant ``at`` (events later than ``at`` are ignored, so
        the settable clock can look back): {"status": good|hold|revoked|expired|not_yet_valid,
        "since": iso or None, "reason": RFC 5280 reason or None, "revoked_at": iso or None}."""
        when = iso(at)
        state = {"status": "good", "since": None, "reason": None, "revoked_at": None}
        events = self.conn.execute("SELECT at, event, reason FROM cert_events WHERE cert_id = ? AND at <= ? "
                                   "ORDER BY at, id", (cert_row["id"], when)).fetchall()
        if not events:
            return {"status": "not_yet_valid" if when < cert_row["not_before"] else "unknown",
                    "since": None, "reason": None, "revoked_at": None}
        for ev in events:
            if ev["event"] in ("issued", "released"):
                state = {"status": "good", "since": ev["at"], "reason": None, "revoked_at": None}
            elif ev["event"] == "hold":
                state = {"status": "hold", "since": ev["at"], "reason": "certificateHold", "revoked_at": ev["at"]}
            elif ev["event"] == "revoked":
                state = {"status": "revoked", "since": ev["at"], "reason": ev["reason"], "revoked_at": ev["at"]}
                break  # STATE-2: revocation is final
        if state["status"] == "good":
            if when > cert_row["not_after"]:
                state = {"status": "expired", "since": cert_row["not_after"], "reason": None, "revoked_at": None}
            elif when < cert_row["not_before"]:
                state = {"status": "not_yet_valid", "since": None, "reason": None, "revoked_at": None}
        return state

    def revoked_rows(self, ca_kind: str, at: _dt.datetime) -> list[tuple]:
        """(cert row, status dict) of every certificate of ``ca_kind`` on hold or revoked at ``at``.
        Entries stay after the certificate expires (the CRL decision of revocation.py)."""
        when = iso(at)
        out = []
        rows = self.conn.execute(
            "SELECT DISTINCT c.* FROM certificates c JOIN cert_events e ON e.cert_id = c.id "
            "WHERE c.ca_kind = ? AND e.event IN ('hold', 'revoked') AND e.at <= ? "
            "ORDER BY c.serial", (ca_kind, when)).fetchall()
        for row in rows:
            status = self.status_at(row, at)
            if status["status"] in ("hold", "revoked"):
                out.append((row, status))
        return out

    # --- RevocationSource (issuance/pki/revocation.py) ------------------------------------------
    def certificate_status(self, ca_kind: str, serial: int, at: _dt.datetime):
        """The protocol's view: good / hold / revoked as of ``at``; "unknown" for a serial this CA
        never issued or had not issued yet at ``at``. An expired certificate is still "good"
        here (with its not_after): expiry is the verifier's date check, not revocation."""
        from mynaemu.issuance.pki import revocation as rv

        rv.check_kind(ca_kind)
        rv.check_serial(serial)
        at = rv.instant(at)
        row = self.certificate_by_serial(ca_kind, serial)
        if row is None or not self.delivered_by(row["application_id"], at):
            # Decision (trust boundaries): a certificate is not "good" before its card is handed
            # over (交付). RFC 6960 §2.2: "unknown" when the responder does not know the status;
            # a relying party must not treat it as good (the centre refuses it, exit 5), and it
            # is not a revocation, so no CRL entry or revocation time is invented for it.
            return rv.CertStatus(rv.UNKNOWN)
        status = self.status_at(row, at)
        not_after = parse_iso(row["not_after"])
        if status["status"] in ("good", "expired"):
            return rv.CertStatus(rv.GOOD, not_after=not_after)
        if status["status"] == "hold":
            return rv.CertStatus(rv.HOLD, parse_iso(status["revoked_at"]),
                                 _reason_flag("certificateHold"), not_after)
        if status["status"] == "revoked":
            return rv.CertStatus(rv.REVOKED, parse_iso(status["revoked_at"]),
                                 _reason_flag(status["reason"]), not_after)
        return rv.CertStatus(rv.UNKNOWN)

    def delivered_by(self, app_id: str, at: _dt.datetime) -> bool:
        """Was the card of `app_id` handed over (交付) at or before `at`? (True for a certificate
        the workflow did not issue for a card: there is no handover to wait for.)"""
        row = self.conn.execute("SELECT delivered_at FROM cards WHERE application_id = ?", (app_id,)).fetchone()
        return row is None or (row[0] is not None and row[0] <= iso(at))

    def revoked_certificates(self, ca_kind: str, at: _dt.datetime):
        from mynaemu.issuance.pki import revocation as rv

        rv.check_kind(ca_kind)
        at = rv.instant(at)
        return [rv.RevokedEntry(row["serial"], parse_iso(status["revoked_at"]), _reason_flag(status["reason"]))
                for row, status in self.revoked_rows(ca_kind, at)]

    def auth_certificate_der(self, serial: int):
        """(application id, DER) of the user-authentication certificate with this serial, or None."""
        return self.conn.execute("SELECT application_id, der FROM certificates WHERE ca_kind = 'auth' AND serial = ?",
                                 (serial,)).fetchone()


def _reason_flag(name: str):
    from cryptography import x509

    return x509.ReasonFlags(name)
