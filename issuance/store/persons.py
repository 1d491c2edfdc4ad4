"""The store's residents: 基本4情報 and their history, 住民票コード, 個人番号 history (NUM-2, NUM-7, MOV-1)."""
from __future__ import annotations

import datetime as _dt
import secrets

from mynaemu.issuance.store.values import iso


class PersonsTable:
    """Table group `persons`, `individual_numbers`, `person_changes`."""

    # --- persons and numbers (NUM-2, NUM-7) ---------------------------------------------------
    def find_person_by_basic4(self, name: str, birth: _dt.date, sex: str, address: str):
        return self.conn.execute(
            "SELECT * FROM persons WHERE name = ? AND birth = ? AND sex = ? AND address = ?",
            (name, birth.isoformat(), sex, address)).fetchone()

    def person(self, person_id: int):
        row = self.conn.execute("SELECT * FROM persons WHERE id = ?", (person_id,)).fetchone()
        if row is None:
            raise KeyError(person_id)
        return row

    def new_juminhyo_code(self) -> str:
        """A fresh 11-digit 住民票コード (the municipality's, AP-6); its own check rule is not modelled."""
        while True:
            code = f"{secrets.randbelow(10**11):011d}"
            if self.conn.execute("SELECT 1 FROM persons WHERE juminhyo_code = ?", (code,)).fetchone() is None:
                return code

    def insert_person(self, *, juminhyo_code: str, name: str, name_kana: str, birth: _dt.date, sex: str,
                      address: str, name_alt: str | None, address_alt: str | None, guardianship: bool,
                      municipality_code: str, prefecture_romaji: str, city_romaji: str,
                      at: _dt.datetime) -> int:
        return self.conn.execute(
            "INSERT INTO persons (juminhyo_code, name, name_kana, birth, sex, address, name_alt,"
            " address_alt, guardianship, municipality_code, prefecture_romaji, city_romaji,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (juminhyo_code, name, name_kana, birth.isoformat(), sex, address, name_alt, address_alt,
             int(guardianship), municipality_code, prefecture_romaji, city_romaji, iso(at), iso(at)),
        ).lastrowid

    def assign_individual_number(self, person_id: int, *, at: _dt.datetime, reason: str | None = None) -> str:
        """Designate a (new) 個人番号 for the person (NUM-2, NUM-5), closing the current one (NUM-7).

        The number comes from the keyed TEST conversion of the 住民票コード; `attempt` steps past
        every number this person had and any collision with another person's (past) number.
        """
        from mynaemu.issuance.numbering import individual_number_from_juminhyo_code

        person = self.person(person_id)
        row = self.conn.execute("SELECT max(attempt) FROM individual_numbers WHERE person_id = ?",
                                (person_id,)).fetchone()
        attempt = 0 if row[0] is None else row[0] + 1
        while True:
            number = individual_number_from_juminhyo_code(person["juminhyo_code"], self.numbering_secret,
                                                          attempt=attempt)
            if self.conn.execute("SELECT 1 FROM individual_numbers WHERE number = ?", (number,)).fetchone() is None:
                break
            attempt += 1
        self.conn.execute("UPDATE individual_numbers SET valid_until = ?, change_reason = ? "
                          "WHERE person_id = ? AND valid_until IS NULL", (iso(at), reason, person_id))
        self.conn.execute("INSERT INTO individual_numbers (person_id, number, attempt, valid_from) "
                          "VALUES (?, ?, ?, ?)", (person_id, number, attempt, iso(at)))
        return number

    def individual_number(self, person_id: int) -> str:
        row = self.conn.execute("SELECT number FROM individual_numbers WHERE person_id = ? AND "
                                "valid_until IS NULL", (person_id,)).fetchone()
        if row is None:
            raise KeyError(f"person {person_id} has no current individual number")
        return row[0]

    def number_history(self, person_id: int) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT number, attempt, valid_from, valid_until, change_reason FROM individual_numbers "
            "WHERE person_id = ? ORDER BY attempt", (person_id,))]

    def change_person(self, person_id: int, *, at: _dt.datetime, field: str, value, reason: str,
                      audit_id: int | None) -> None:
        if field not in ("name", "address", "sex", "birth", "name_alt", "address_alt", "guardianship",
                         "resident_status"):
            raise ValueError(f"cannot change person field {field!r}")
        old = self.person(person_id)[field]
        self.conn.execute(f"UPDATE persons SET {field} = ?, updated_at = ? WHERE id = ?",
                          (value, iso(at), person_id))
        self.conn.execute("INSERT INTO person_changes (person_id, at, field, old_value, new_value, reason,"
                          " audit_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (person_id, iso(at), field, None if old is None else str(old),
                           None if value is None else str(value), reason, audit_id))

    def person_of_card(self, app_id: str):
        """The holder of the card `app_id` (None for an unknown card)."""
        return self.conn.execute("SELECT p.* FROM cards AS k JOIN persons AS p ON p.id = k.person_id "
                                 "WHERE k.application_id = ?", (app_id,)).fetchone()

    def all_persons(self) -> list:
        return self.conn.execute("SELECT * FROM persons ORDER BY id").fetchall()

    def municipality_codes(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT municipality_code FROM persons ORDER BY 1")]

    def search_persons(self, *, name: str | None = None, birth: _dt.date | None = None,
                       address: str | None = None, sex: str | None = None) -> list:
        """Persons whose 基本4情報 equal every item given. SEC-15: at least two of name, birth and
        address (sex alone narrows nothing worth the name); ValueError otherwise."""
        given = {"name": name, "birth": birth.isoformat() if birth is not None else None, "address": address}
        if sum(v is not None for v in given.values()) < 2:
            raise ValueError("a search needs at least two of name, birth, address (SEC-15)")
        if sex is not None:
            given["sex"] = sex
        where = " AND ".join(f"{column} = ?" for column, value in given.items() if value is not None)
        return self.conn.execute(f"SELECT * FROM persons WHERE {where} ORDER BY id",
                                 tuple(v for v in given.values() if v is not None)).fetchall()
