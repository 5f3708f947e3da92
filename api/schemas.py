"""Request and response bodies as msgspec Structs: strict decoding and the OpenAPI schemas.

The same types decode requests (wrong types, unknown or missing fields → 422, malformed JSON →
400) and generate /openapi.json, so the documentation cannot drift from the validation.
Every integer and string is bounded: unbounded values reach BSON as errors, not as 4xx.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, TypeVar

import falcon
import msgspec

from api.errors import BadRequest, ValidationFailed
from queue_worker.enqueue import MAX_KEY_LENGTH

T = TypeVar("T")

# No control characters: names go into mail headers and logs, where CR/LF or NUL would inject.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
# Surrounding blanks are allowed (the address is trimmed); inside, no blanks or controls.
EMAIL_PATTERN = r"^\s*[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+\s*$"
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]
LoginEmail = Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
NewPassword = Annotated[str, msgspec.Meta(min_length=8, max_length=128)]
AnyPassword = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
Age = Annotated[int, msgspec.Meta(ge=0, le=150)]
TaskName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Priority = Annotated[int, msgspec.Meta(ge=-1000, le=1000)]
DelayS = Annotated[float, msgspec.Meta(ge=0, le=30 * 86400)]
# The API scopes keys per user ("<24-hex user id>:<key>") within the queue's key length.
KEY_SCOPE_CHARS = 25
IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LENGTH - KEY_SCOPE_CHARS)
]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: unknown fields are an error, not silently ignored.

    `FREE_FORM` names fields whose values are the client's own data, passed on unchanged."""

    FREE_FORM: ClassVar[frozenset[str]] = frozenset()


class SignupRequest(Strict):
    name: Name
    email: Email
    password: NewPassword
    age: Age | None = None


class LoginRequest(Strict):
    email: LoginEmail
    password: AnyPassword


class RefreshRequest(Strict):
    # Optional: clients (axios among them) send `{}` with the token in Authorization: Bearer.
    refresh_token: Token | None = None


class VerifyEmailRequest(Strict):
    token: Token


class ForgotPasswordRequest(Strict):
    email: LoginEmail


class ResetPasswordRequest(Strict):
    token: Token
    password: NewPassword


class ChangePasswordRequest(Strict):
    current_password: AnyPassword
    new_password: NewPassword
    keep_other_sessions: bool = False


class ReauthenticateRequest(Strict):
    password: AnyPassword


OtpCode = Annotated[str, msgspec.Meta(min_length=6, max_length=12, pattern=r"^[0-9 ]+$")]
RecoveryCode = Annotated[
    str, msgspec.Meta(min_length=10, max_length=32, pattern=r"^[A-Za-z0-9 -]+$")
]


class MfaConfirmRequest(Strict):
    code: OtpCode


class MfaCodeRequest(Strict):
    """A second-factor step: a code from the authenticator, or one recovery code."""

    code: OtpCode | None = None
    recovery_code: RecoveryCode | None = None


class MfaLoginRequest(Strict):
    mfa_token: Token
    code: OtpCode | None = None
    recovery_code: RecoveryCode | None = None


class JobRequest(Strict):
    FREE_FORM = frozenset({"payload"})

    task: TaskName
    payload: dict[str, Any] = {}
    priority: Priority | None = None
    delay_s: DelayS | None = None
    idempotency_key: IdempotencyKey | None = None


class TokenResponse(msgspec.Struct):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


class MfaChallengeResponse(msgspec.Struct):
    """A right password of an account with a second factor: no tokens yet; send a code with
    `mfa_token` to POST /users/login/mfa within `expires_in` seconds."""

    mfa_token: str
    expires_in: int
    mfa_required: bool = True


class MfaEnrolment(msgspec.Struct):
    """A pending second factor: add it to an authenticator (scan the QR code, or type the
    secret), then confirm with one of its codes."""

    otpauth_uri: str
    secret: str
    qr_svg: str


class MfaStatus(msgspec.Struct):
    """Whether the caller's second factor is on, and how many recovery codes are unused."""

    enabled: bool
    recovery_codes_left: int


class RecoveryCodes(msgspec.Struct):
    """Single-use codes for when the authenticator is lost: shown this once, stored hashed."""

    recovery_codes: list[str]


class ProfileResponse(msgspec.Struct):
    id: str
    name: str
    email: str
    age: int | None
    created_at: datetime
    email_verified: bool


class PublicUserResponse(msgspec.Struct):
    id: str
    name: str
    created_at: datetime


class SessionResponse(msgspec.Struct):
    id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ip: str
    user_agent: str
    current: bool


class SessionsResponse(msgspec.Struct):
    sessions: list[SessionResponse]


class SecurityEventResponse(msgspec.Struct):
    id: str
    type: str
    at: datetime
    ip: str | None
    user_agent: str | None


class SecurityEventsPage(msgspec.Struct):
    events: list[SecurityEventResponse]
    # Pass as ?before= for the next (older) page; null on the last page.
    next_before: str | None


class JobAccepted(msgspec.Struct):
    id: str
    state: str


class JobStatus(msgspec.Struct):
    id: str
    task: str
    state: str
    attempts: int
    max_attempts: int
    result: Any
    last_error: str | None
    created_at: datetime
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    request_id: str


class ErrorResponse(msgspec.Struct):
    error: ErrorDetail


class StatusResponse(msgspec.Struct):
    status: str


_encoder = msgspec.json.Encoder()


def decode(body: bytes, model: type[T]) -> T:
    """Decode a JSON body strictly into `model`; raise BadRequest or ValidationFailed.

    Strict, but as JSON Schema reads `integer`: a number with no fractional part (888.0, 1e3)
    is an integer. Strings are never numbers, and free-form fields are passed on unchanged."""
    if not body:
        raise BadRequest("A JSON body is required.", code="missing_body")
    try:
        try:
            return msgspec.json.decode(body, type=model)
        except msgspec.ValidationError:
            # The slow path only for bodies the fast one refused: integral floats become ints.
            raw = msgspec.json.decode(body)
            free_form: frozenset[str] = getattr(model, "FREE_FORM", frozenset())
            return msgspec.convert(_integral(raw, free_form), type=model, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        # msgspec lets invalid UTF-8 inside strings escape as UnicodeDecodeError.
        raise BadRequest("The body is not valid JSON.", code="malformed_json") from None
    except RecursionError:
        # Free-form fields (a job's payload) recurse per nesting level; a small body of
        # thousands of brackets reaches the interpreter's limit before any schema check.
        raise ValidationFailed("The body is nested too deeply.", code="nested_too_deeply") from None


def _integral(value: Any, free_form: frozenset[str] = frozenset()) -> Any:
    """Return `value` with every float that has no fractional part made an int, except inside
    the top-level fields named in `free_form`."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: v if k in free_form else _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def send(resp: falcon.Response, body: msgspec.Struct, status: int = 200) -> None:
    """Write a response Struct as JSON."""
    resp.status = falcon.code_to_http_status(status)
    resp.content_type = falcon.MEDIA_JSON
    resp.data = _encoder.encode(body)
