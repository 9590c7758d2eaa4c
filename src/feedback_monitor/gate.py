"""What every request passes before its route: a bearer token with the right scope, then the
client's rate limit.

Writes (any method but GET and HEAD) need the ``write`` scope once tokens are configured; reads
(``/metrics``, ``/api/v1/...``) need ``read`` only under ``protect_reads``. ``/health``,
``/ready``, ``/openapi.json`` and the dashboard's page and files (``/``, ``/static/...``: they
hold no data; the page asks for a read token when the API wants one) are never gated. The
rate limit counts requests per token when the request was authenticated, else per client
address (the peer's: behind a proxy, all of its clients share one; an IPv6 /64, which a host may
pick any address of), refused ones too: past its rate a client guessing tokens gets 429s, not
more answers.
"""

import ipaddress
import math
from collections.abc import Hashable

from starlette.types import Scope as ASGIScope

from feedback_monitor.auth import Scope, Tokens, bearer
from feedback_monitor.errors import ClientError
from feedback_monitor.limits import RateLimiter
from feedback_monitor.settings import Settings

PUBLIC = frozenset({"/health", "/ready", "/openapi.json", "/"})
PUBLIC_PREFIX = "/static/"
READS = frozenset({"GET", "HEAD"})
_CHALLENGE = 'Bearer realm="feedback-monitor"'


def unauthorized(message: str, error: str = "") -> ClientError:
    challenge = _CHALLENGE + (f', error="{error}"' if error else "")
    return ClientError(401, message, "unauthorized", headers={"WWW-Authenticate": challenge})


def forbidden(needed: Scope) -> ClientError:
    challenge = f'{_CHALLENGE}, error="insufficient_scope", scope="{needed}"'
    message = f"The token lacks the {needed} scope"
    return ClientError(403, message, "forbidden", headers={"WWW-Authenticate": challenge})


def rate_limited(rate: float, wait: float) -> ClientError:
    retry = str(max(1, math.ceil(wait)))
    message = f"Rate limit exceeded: {rate:g} requests a second per client"
    return ClientError(429, message, "rate_limited", headers={"Retry-After": retry})


def authorization(scope: ASGIScope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return b""


class Gate:
    """Refuses a request (``ClientError``) that lacks a token, its scope, or its client's turn."""

    def __init__(
        self, tokens: Tokens | None, protect_reads: bool, limiter: RateLimiter | None
    ) -> None:
        self.tokens = tokens
        self.protect_reads = protect_reads
        self.limiter = limiter  # per address, bounded: it may make a new address wait
        # Per valid token, apart: their number is the file's, and a flood of addresses that
        # fills the table above must not make a token's client wait for a bucket.
        self.token_limiter = None if limiter is None else RateLimiter(limiter.rate, limiter.burst)

    @classmethod
    def of(cls, settings: Settings) -> "Gate | None":
        """The gate the settings ask for; ``None`` (nothing to check) by default."""
        api_token = settings.api_token.get_secret_value() if settings.api_token else None
        tokens = Tokens.load(api_token, settings.token_file)
        limiter = RateLimiter(settings.rate_limit) if settings.rate_limit else None
        if tokens is None and limiter is None:
            return None
        return cls(tokens, settings.protect_reads, limiter)

    def __call__(self, scope: ASGIScope) -> None:
        if scope["path"] in PUBLIC or scope["path"].startswith(PUBLIC_PREFIX):
            return
        try:
            key = self._authenticate(scope)
        except ClientError:
            self._limit(scope)  # so that guessing tokens takes turns too
            raise
        self._limit(scope, key)

    def _limit(self, scope: ASGIScope, key: Hashable = None) -> None:
        """The client's turn: its token's (``key``) if it gave one, else its address's."""
        limiter = self.limiter if key is None else self.token_limiter
        if limiter is not None and (wait := limiter.wait(key or _client(scope))):
            raise rate_limited(limiter.rate, wait)

    def _authenticate(self, scope: ASGIScope) -> bytes | None:
        """The digest of the request's token when one is needed and valid; refuses otherwise."""
        needed = Scope.READ if scope["method"] in READS else Scope.WRITE
        if self.tokens is None or (needed is Scope.READ and not self.protect_reads):
            return None
        token = bearer(authorization(scope))
        if token is None:
            raise unauthorized("Missing bearer token (Authorization: Bearer <token>)")
        grant = self.tokens.grant(token)
        if grant is None:
            raise unauthorized("Invalid bearer token", "invalid_token")
        if needed not in grant.scopes:
            raise forbidden(needed)
        return grant.digest


def _client(scope: ASGIScope) -> Hashable:
    """The peer's address; for IPv6 its /64, which one host is given whole to pick from."""
    client = scope.get("client")
    host: str = client[0] if client else ""
    if ":" not in host:  # IPv4 (nearly every request): as it is
        return host
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:  # no address (a test client's name)
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.packed[:8]  # its /64
