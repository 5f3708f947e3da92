"""The HTTP API: accounts with rotating token families, and job submission (see app.py)."""
