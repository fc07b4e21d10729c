"""Password hashing with scrypt (memory-hard, in the standard library).

Stored form: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``; parameters travel with the hash,
so they can be raised later without invalidating old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

LOG2_N = 14
R = 8
P = 1
DKLEN = 32


def hash_password(password: str, *, log2_n: int = LOG2_N) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=2**log2_n, r=R, p=P, dklen=DKLEN, maxmem=2**27
    )
    b64 = base64.b64encode
    return f"scrypt${log2_n}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, log2_n, r, p, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(hash_b64)
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=2 ** int(log2_n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=2**27,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)
