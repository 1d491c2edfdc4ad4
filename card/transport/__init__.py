"""Doors through which a card is exposed: in-process and the vpcd virtual reader."""
