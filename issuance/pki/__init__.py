"""The TEST JPKI: CAs, keys, certificate profiles, revocation (CRL) and OCSP."""
