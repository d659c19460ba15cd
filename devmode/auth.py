"""An optional password for the whole app, for the team's internal screen.

    $ python -m devmode hash-password                     # asks twice, prints the hash
    $ DEVMODE_PASSWORD_HASH='pbkdf2_sha256$600000$...' make run

Off unless a hash is configured: in ``$DEVMODE_PASSWORD_HASH``, or as the Streamlit secret
``devmode_password_hash`` (``.streamlit/secrets.toml`` on the server). Only the hash is ever
configured; the password itself is not stored, logged or exported anywhere. The hash is PBKDF2-
HMAC-SHA256 with a random 16-byte salt and 600,000 iterations (OWASP's figure for this
algorithm), written as ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` with base64 parts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from devmode.errors import DevmodeError

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 600_000
PASSWORD_HASH_ENV = "DEVMODE_PASSWORD_HASH"
PASSWORD_HASH_SECRET = "devmode_password_hash"
MIN_PASSWORD_LENGTH = 8


class InvalidPasswordHash(DevmodeError):
    """The configured hash is not one ``hash_password`` wrote."""


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The text to configure for ``password`` (a new random salt each time)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DevmodeError(
            f"The password has {len(password)} characters; choose one of at least "
            f"{MIN_PASSWORD_LENGTH} characters."
        )
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join([ALGORITHM, str(iterations), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (compared in constant time)."""
    algorithm, iterations, salt, expected = _parse(encoded)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return hmac.compare_digest(digest, expected)


def _parse(encoded: str) -> tuple[str, int, bytes, bytes]:
    parts = encoded.strip().split("$")
    try:
        if len(parts) != 4 or parts[0] != ALGORITHM:
            raise ValueError
        return parts[0], int(parts[1]), _unb64(parts[2]), _unb64(parts[3])
    except ValueError:
        raise InvalidPasswordHash(
            f"The configured password hash is not in the expected form "
            f"'{ALGORITHM}$<iterations>$<salt>$<hash>' (found {len(parts)} part(s) starting "
            f"{parts[0][:16]!r}). Make one with `python -m devmode hash-password`."
        ) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as e:
        raise ValueError(str(e)) from e
