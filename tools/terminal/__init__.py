"""The terminal side: a client that drives any card, its secure messaging, card scripts and the kiosk terminal."""
