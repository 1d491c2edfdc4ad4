"""The TEST back office's store: an embedded SQLite database under MYNAEMU_HOME, or PostgreSQL.

Backends: ``Store.open(home)`` is SQLite (one file, ``issuance.sqlite3``); a ``postgresql://`` URL
(``Store(url)``, ``Store.open(db=url)``, ``MYNAEMU_DB`` or the issue CLI's ``--db``) is PostgreSQL
through psycopg 3 (postgres.py holds that dialect). Same schema, same migrations, same SQL and the same
workflow code on both; the few dialect differences are isolated (postgres.py: placeholders, identity
columns, BYTEA, RETURNING id; sqlite.py: the file and its pragmas; connection.py: BEGIN IMMEDIATE vs
row locks, one migration step).

What it keeps (schema version 1, created by the ordered MIGRATIONS below):

- ``settings``: deployment facts: the rule set (policy.rule_set, chosen once per deployment),
  the numbering secret of the TEST 個人番号 function (numbering.py, NUM-2), creation time.
- ``persons``: 住民票コード, 基本4情報 (DATA-1), 代替文字 flags (DATA-5), 成年被後見人
  (guardianship, ELIG-2), residence status (M10: removed / deceased).
- ``individual_numbers``: every 個人番号 a person ever had, with validity instants (NUM-7 keeps
  the history; a number is never reused: UNIQUE over the whole history).
- ``person_changes``: history of the 基本4情報 and status (異動, MOV-1). Never a 個人番号.
- ``applications``: the form (FLOW-3): id as on the form's QR (FLOW-4, see make_form_id),
  kind first/renewal/reissue, the card it replaces, 不要 ticks (M9), 代替文字 confirmation.
- ``cards``: one per application: lifecycle state (STATE-1, see workflow.py), 交付通知書 id,
  15-digit card serial, validity, 4-digit security code, the personalised image as JSON.
- ``card_events``: every state change of a card, with the instant and the audit record.
- ``deliveries``: what was checked at the counter (STATE-3 item 7), who set the PINs (ELIG-3),
  proxy details (FLOW-PROXY-*). No PIN is ever stored here.
- ``certificates`` + ``cert_events``: per CA kind, serials unique per CA, validity, DER, and the
  status history issued / hold / released / revoked with instants and RFC 5280 reasons
  (STATE-2). The store answers revocation questions from these tables (RevocationSource).
- ``keys``: private keys (PKCS#8 PEM) by role, only while they are not on a card yet: from 発行
  until 交付 (which deletes them, and the chip image copy in ``cards.image``), and a key issued by
  a step done without the card (異動/renewal without --card) until write-card puts it on the card.
  As at J-LIS, no holder private key stays once the card holds it; counter work that rewrites
  the chip generates new keys in the presented card (cardwrite.py). Schema v3 deleted the keys of
  cards delivered before it. ``card_bindings``: the public half of each card's 共通AP key, which a
  presented card must prove it holds before it is written; ``card_writes``: card files committed
  but not yet renamed into place (paths and digests only), finished by the next command.
- ``audit``: operator id, terminal id, instant, operation, target, reason, outcome (SEC-8,
  DATA-3 操作者ID/操作端末ID). Refused attempts are audited too (SEC-8, SEC-9). Every text
  written here passes ``scrub()``, which masks any 12-digit run, so no 個人番号 can land in it;
  PINs are never passed to it.

Concurrency, SQLite: WAL journal, a busy timeout, and every write inside ``BEGIN IMMEDIATE`` (the
write lock is taken at the start, so two CLI processes serialise instead of failing on upgrade).
Reads that must be consistent with a later write happen inside the same transaction.

Concurrency, PostgreSQL: many writers at once, READ COMMITTED, and row locks taken before the
reads a change depends on: ``lock_card`` locks the holder's ``persons`` row and then the card row
(``SELECT … FOR UPDATE``), so every operation on a person's cards (a card, its replacement, the
person's 基本4情報) runs one at a time, and because the person is always locked first no two
transactions wait on each other in a cycle. Under READ COMMITTED each statement after the lock
sees every change committed before it, which is what BEGIN IMMEDIATE gives on SQLite. Work that
has no row yet (a new person at 申請, a counter in ``settings``) takes a transaction-scoped
advisory lock on its name (``lock_name``). A lock wait past the busy timeout is StoreBusy; a
deadlock (not expected with this order) is StoreConflict, which the workflow retries.

Batch issuance (batch.py): applications waiting in 申請/受付 are claimed one at a time with
``claim_next`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so N workers never wait on each other;
the single writer on SQLite). A claim is a lease (``cards.claim_owner``/``claim_until``) kept in
the store, so it outlives a killed worker: it is claimable again when the lease expires, or at
once when its owner is a dead process of this machine (``release_dead_claims``). A card is
generated at most once however claims overlap: ``generate`` runs under the card's row lock and
refuses any state but 申請/受付.

Where things are: errors.py (the errors), values.py (instants, scrub, state names), forms.py (form
ids), schema.py (MIGRATIONS), connection.py + sqlite.py + postgres.py (the backends), one module per
table group (audit, persons, cards, claims, custody, certificates, kiosk_history) composed into ``Store`` by
database.py, pki.py (each store's own TEST CAs), service_records.py (the kiosk services'
history and refusals, a short connection per write). Import from this package; its names below are the
public surface.
"""
from __future__ import annotations

from mynaemu.issuance.store.claims import claim_owner_id, lease_stamp
from mynaemu.issuance.store.connection import BUSY_TIMEOUT_S, DB_NAME, store_location
from mynaemu.issuance.store.database import Store, StoreRevocationSource, StoreSpentChallenges
from mynaemu.issuance.store.errors import StoreBusy, StoreConflict, StoreError
from mynaemu.issuance.store.kiosk_history import KioskIssue, municipality_operator
from mynaemu.issuance.store.service_records import CENTRE_OPERATOR, StoreCentreTrail, StoreKioskHistory
from mynaemu.issuance.store.forms import FORM_ALPHABET, FORM_ID_LENGTH, check_form_id, make_form_id, normalise_form_id
from mynaemu.issuance.store.schema import MIGRATIONS, SCHEMA_VERSION
from mynaemu.issuance.store.values import (
    CARD_STATES, CERT_EVENTS, QUEUE_STATES, REVOCATION_REASONS, default_home, iso, parse_iso, scrub,
)

__all__ = [
    "DB_NAME", "SCHEMA_VERSION", "MIGRATIONS", "Store", "StoreError", "StoreBusy",
    "default_home", "scrub", "iso", "parse_iso", "make_form_id", "check_form_id", "normalise_form_id",
    "CARD_STATES", "CERT_EVENTS", "REVOCATION_REASONS", "StoreRevocationSource", "StoreConflict",
    "QUEUE_STATES", "claim_owner_id", "lease_stamp", "store_location", "BUSY_TIMEOUT_S", "FORM_ALPHABET",
    "FORM_ID_LENGTH", "StoreSpentChallenges", "KioskIssue", "municipality_operator", "CENTRE_OPERATOR",
    "StoreKioskHistory", "StoreCentreTrail",
]
