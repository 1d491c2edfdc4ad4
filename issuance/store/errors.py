"""The store's errors (a leaf module: every backend and table group raises these)."""
from __future__ import annotations




class StoreError(Exception):
    """The store cannot be opened or used (one line)."""


class StoreBusy(StoreError):
    """Another process held the write lock longer than the busy timeout."""


class StoreConflict(StoreBusy):
    """PostgreSQL aborted the transaction (deadlock or serialization failure); nothing was
    changed and the whole transaction may be run again."""
