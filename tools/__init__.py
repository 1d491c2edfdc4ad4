"""The terminal side: a client that drives any card, the kiosk verifier and the mynaemu CLI."""
