"""An authenticator app on the wall clock, for tests against a running server (whose clock is
real): it hands out codes for steps it has not used yet, as a person waiting for the next code
would, without waiting. The server takes one step either side of its own, so an account is good
for the enrolment's code and one or two sign-ins in the same 30 s; tests needing more sign-ins
make more accounts rather than sleep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.auth.tokens.totp import DRIFT_STEPS, STEP_S, code_at, step_of


class Authenticator:
    """Codes for one secret, each for a step later than the last one given."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._last_step: int | None = None

    def code(self) -> str:
        """The code of the next unused step (now's, or later ones the server still accepts)."""
        now = datetime.now(UTC)
        step = step_of(now) if self._last_step is None else max(self._last_step + 1, step_of(now))
        if step > step_of(now) + DRIFT_STEPS:
            raise AssertionError("this account has used its codes for now: make another")
        self._last_step = step
        return code_at(self.secret, now + timedelta(seconds=(step - step_of(now)) * STEP_S))
