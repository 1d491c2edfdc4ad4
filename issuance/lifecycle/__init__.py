"""The card and certificate lifecycle: the issuance workflow's steps over the store."""
