"""Test harnesses: the APDU fuzzer, the tearing harness, private pcscd and PostgreSQL servers, the pytest plugin."""
