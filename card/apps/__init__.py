"""Layouts and rules of the card applications, one module per AP (spec card-interface.md §3)."""
