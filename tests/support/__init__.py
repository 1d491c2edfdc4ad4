"""Helpers the tests import (never collected as tests). REPO is the repository's root folder."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
