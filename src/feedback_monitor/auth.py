"""Bearer tokens and their scopes, compared in constant time and kept only as SHA-256 digests.

A token file holds one token a line with its scopes, comma-separated; blank lines and lines
starting with ``#`` are skipped::

    # token                              scopes
    3b1f0c9e6d2a4f8e9a7c5b3d1e0f2a4c     write
    dashboard-7f3e9a1c2b4d6e8f           read
    ops-0d9c8b7a6f5e4d3c2b1a             write,read

A token is RFC 6750's ``b64token``: letters, digits and ``-._~+/``, then any ``=``.
"""

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

TOKEN_PATTERN = r"^[A-Za-z0-9\-._~+/]+=*$"
_TOKEN = re.compile(TOKEN_PATTERN)

# The command-line clients' (report, replay) token, and the service's URL when not --url.
TOKEN_VARIABLE = "FEEDBACK_MONITOR_TOKEN"
URL_VARIABLE = "FEEDBACK_MONITOR_URL"


class Scope(StrEnum):
    WRITE = "write"
    READ = "read"


ALL_SCOPES = frozenset(Scope)


@dataclass(frozen=True)
class Grant:
    """What a valid token may do; ``digest`` identifies it without revealing it."""

    digest: bytes
    scopes: frozenset[Scope]


def digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def check_token(token: str) -> str:
    """``token`` if it can be sent in a ``Bearer`` header, else ``ValueError`` (not naming it)."""
    if not _TOKEN.fullmatch(token):  # (match would let a final newline through "$")
        raise ValueError("a token is letters, digits and -._~+/ then any =")
    return token


def bearer_headers(token: str | None) -> dict[str, str]:
    """The header that carries ``token`` to the service, if any; ``ValueError`` for a token no
    header can carry (a client would otherwise fail at every attempt as if the server were
    down)."""
    return {} if token is None else {"authorization": f"Bearer {check_token(token)}"}


def parse_token_file(text: str) -> list[tuple[str, frozenset[Scope]]]:
    """Each token with its scopes, or ``ValueError`` naming the line (never the token)."""
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.partition("#")[0].split()  # no token holds a #: the rest is a comment
        if not fields:
            continue
        try:
            tokens.append(_entry(fields))
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from None
    if not tokens:
        raise ValueError("no token in the file")
    if len({token for token, _ in tokens}) < len(tokens):
        raise ValueError("a token is listed twice")
    return tokens


def _entry(fields: list[str]) -> tuple[str, frozenset[Scope]]:
    if len(fields) != 2:
        raise ValueError("expected a token and its scopes (write, read), comma-separated")
    try:
        scopes = frozenset(Scope(name) for name in fields[1].split(","))
    except ValueError:
        raise ValueError("scopes are write and read, comma-separated") from None
    return check_token(fields[0]), scopes


def read_token_file(path: Path) -> list[tuple[str, frozenset[Scope]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark (Notepad's) skipped
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    return parse_token_file(text)


class Tokens:
    """The configured tokens; ``grant`` checks a presented one against every one of them."""

    def __init__(self, tokens: list[tuple[str, frozenset[Scope]]]) -> None:
        self.grants = [Grant(digest(token.encode()), scopes) for token, scopes in tokens]

    @classmethod
    def load(cls, api_token: str | None, token_file: Path | None) -> "Tokens | None":
        """``api_token`` with every scope, and the file's tokens; ``None`` when there are none."""
        tokens = [(api_token, ALL_SCOPES)] if api_token else []
        if token_file is not None:
            tokens += read_token_file(token_file)
        return cls(tokens) if tokens else None

    def grant(self, token: bytes) -> Grant | None:
        """The grant of ``token``, in a time that does not depend on which token matched."""
        presented = digest(token)
        found = None
        for grant in self.grants:  # no early exit: every digest is compared
            if hmac.compare_digest(presented, grant.digest):
                found = grant
        return found


def bearer(authorization: bytes) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header value, if it is one."""
    scheme, _, token = authorization.strip().partition(b" ")
    token = token.strip()
    return token if scheme.lower() == b"bearer" and token else None
