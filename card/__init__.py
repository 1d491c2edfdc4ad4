"""The software card: APDU codec, file system, PINs, one module per application, card image, doors."""
