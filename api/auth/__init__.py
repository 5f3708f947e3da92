"""Accounts and authentication, by what a newcomer looks for:

flows/      one module per account flow (sign-up, login, refresh, ...)
steps/      what several flows share (password attempts, issuing, revocation, notices)
stores/     what the flows keep in the database (users, sessions, limits, security log)
tokens/     the JWT codec, ES256 signing keys, the keys command
passwords/  hashing and the policy
context.py  `AuthContext`, the one object every flow works with
addresses.py, networks.py  the rules for email addresses and known networks
"""
