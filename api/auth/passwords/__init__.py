"""Passwords: hashing (peppered bcrypt in a thread pool) and the policy a new password must
meet (length, the breached-password list shipped beside it)."""
