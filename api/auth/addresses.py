"""Email addresses: one normal form per mailbox, and only addresses we can mail.

The rule, applied before the uniqueness check at sign-up and before every login lookup:

1. Unicode NFKC: full-width letters, ligatures and NFD/NFC variants become one spelling.
2. Default-ignorable code points are removed (zero-width space and joiners, soft hyphen,
   variation selectors, bidi controls, ...): invisible, so two addresses that differ only by
   them look identical to a person.
3. Surrounding blanks and one trailing dot on the domain ("example.com.") are dropped.
4. The domain is IDNA-encoded (UTS 46), so "bücher.de" and "xn--bcher-kva.de" are one domain.
5. The whole address is lower-cased (local parts are case-insensitive in practice).

What cannot be normalised is refused with the reason: a non-ASCII local part (it would need
SMTPUTF8, which we cannot know every relay offers, and an account must be mailable), a
special-use domain (`.test`, `.localhost`, `.invalid`, ...), a domain without a dot, an IP
literal. Validation is `email-validator`'s (PyPI), without DNS lookups. Every stored address is
therefore plain ASCII, and mail to it needs no SMTPUTF8.
"""

from __future__ import annotations

import re
import unicodedata

from email_validator import EmailNotValidError, validate_email

MAX_LENGTH = 254

# Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt, Unicode 15);
# the standard library has no accessor for it.
_DEFAULT_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


class InvalidAddress(ValueError):
    """The address cannot be used for an account; the message says why, for the user."""


def normalize_email(raw: str) -> str:
    """Return the one normal form of an address (see the module docstring); raise
    InvalidAddress with the reason when there is none."""
    text = _DEFAULT_IGNORABLE.sub("", unicodedata.normalize("NFKC", raw)).strip()
    if text.endswith(".") and "@" in text:
        text = text[:-1]
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    address = checked.ascii_email
    if address is None or len(address) > MAX_LENGTH:
        raise InvalidAddress("The email address is too long.")
    return address.lower()


def lookup_key(raw: str) -> str:
    """Return the form a login looks the address up by: the normal form, else (an address no
    account can have) the trimmed, lower-cased input, so unknown addresses are still counted."""
    try:
        return normalize_email(raw)
    except InvalidAddress:
        return raw.strip().lower()
