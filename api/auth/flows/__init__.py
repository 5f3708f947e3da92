"""The account flows, one module per flow, each a short linear function per step over
`AuthContext` (the manner of django-allauth's account/internal/flows):

    signup, login, refresh, logout, authenticate (every request's bearer token),
    verification, password_reset, password_change, session_control (list, end, re-auth)

What several flows share is in `api.auth.steps`; what they read and write, in `api.auth.stores`.
"""
