"""The back office's HTTP server base and strict request reading, shared by its services."""
