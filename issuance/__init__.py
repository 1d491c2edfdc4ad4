"""The TEST back office: policy, CAs and certificate profiles, keys, personalisation, workflow, store, CRL/OCSP."""
