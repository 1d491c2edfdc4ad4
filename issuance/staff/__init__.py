"""The back office's staff (issue 13; rules SEC-1, SEC-4 … SEC-9): accounts, passwords, rights,
and the one authorisation decision every `issue` command passes.

- passwords.py: Argon2id hashes (argon2-cffi), initial passwords, the 3-month ageing rule (SEC-5)
- rights.py: roles, the ``number`` right, the table of operations (SEC-6; vectors/staff/rights.csv)
- accounts.py: the first officer (``issue init``), add, passwd, grant, withdraw, revoke (SEC-7)
- authorise.py: credentials → revoked? → aged? → rights, every refusal audited (SEC-8)
- audit.py: the one audit call of this layer (actor, action, target, outcome)

The rows live in the store's staff table group (issuance/store/staff.py).
"""
