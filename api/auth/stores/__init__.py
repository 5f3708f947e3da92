"""What the account flows keep in the database, one collection per module:

users           accounts (`users`)
sessions        sessions: refresh-token families (`sessions`)
security_log    each account's security events (`security_events`)
limits          rate-limit counters (`rate_limits`)
account_tokens  the single-use tokens of mailed links (`account_tokens`)
user_cache      a per-worker cache of users, kept fresh by a change stream
"""
