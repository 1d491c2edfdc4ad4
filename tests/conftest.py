"""Shared test set-up: the fixtures in tests/fixtures/ are plugins, loaded here for the whole tree.

Tests import shared helpers from tests/support/ as a package (`from tests.support import pcsc_env`):
every test folder is a package, so pytest puts the repository root on the path and nothing edits
sys.path by hand.
"""
pytest_plugins = ["tests.fixtures.pcsc", "tests.fixtures.staff", "tests.fixtures.home"]
