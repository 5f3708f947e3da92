"""Authentication: tokens (JWT), passwords (bcrypt), sessions (token families), rate limits."""
