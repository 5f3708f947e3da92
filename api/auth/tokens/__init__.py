"""Bearer tokens: the JWT codec (access and refresh tokens, their keyrings and the verified-token
cache), the ES256 signing keys published as a JWKS, and the keys command
(`python -m api.auth.tokens.keys`)."""
