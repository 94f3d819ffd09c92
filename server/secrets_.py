"""Tokens and passwords.

Gateway and API tokens are 32 random bytes from the OS CSPRNG. For a secret with 256 bits of
entropy a single fast SHA-256 is enough: nobody can brute-force a preimage, so the
slow KDF that protects low-entropy human passwords would only cost CPU on every request.
People's passwords, which are guessable, use argon2id (argon2-cffi).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

# Prefixes tell a leaked token's kind at a glance (and let secret scanners find them).
GATEWAY_TOKEN_PREFIX: Final = "hgw_"  # noqa: S105
USER_TOKEN_PREFIX: Final = "hut_"  # noqa: S105
MIN_PASSWORD_LEN: Final = 10


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def hash_password(password: str) -> str:
    from argon2 import PasswordHasher

    if len(password) < MIN_PASSWORD_LEN:
        raise ValueError(f"password too short: at least {MIN_PASSWORD_LEN} characters")
    return str(PasswordHasher().hash(password))


def verify_password(pw_hash: str | None, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    if not pw_hash:
        # Spend the same time as a real check so a missing user is not told apart by timing.
        PasswordHasher().hash(password)
        return False
    try:
        return bool(PasswordHasher().verify(pw_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def sign(secret: bytes, payload: str) -> str:
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{mac}"
