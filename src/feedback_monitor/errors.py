"""Errors that carry their HTTP status, a message for the client and a stable reason label.

They are mapped to responses only at the HTTP edge. Anything else raised is a bug: a 500.
"""

from collections.abc import Mapping


class HTTPError(Exception):
    """A request that cannot be served as sent, or not now; ``index`` names a batch item and
    ``headers`` go with the answer (such as WWW-Authenticate or Retry-After)."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str,
        index: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.index = index
        self.headers = dict(headers or {})

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """``headers`` as ASGI wants them."""
        return [(name.lower().encode(), value.encode()) for name, value in self.headers.items()]


class ClientError(HTTPError):
    """A 4xx: the client must change the request."""


class Unavailable(HTTPError):
    """A 503: the service cannot serve now (store down, shutting down). Nothing was stored,
    unless the store failed after its commit (a PostgreSQL connection lost on the way back): a
    retry with the request's ids is counted once either way."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(503, message, reason)


class StoreError(Unavailable):
    """The store failed or its process is gone; the failed call was not acknowledged.

    The client sees only "Store unavailable"; ``detail`` is for the log. A commit whose answer
    was lost (its process died after COMMIT) may still be stored: a retry without an id counts
    it again, which is why clients should send ids.
    """

    def __init__(self, detail: str) -> None:
        super().__init__("Store unavailable", "store_unavailable")
        self.detail = detail

    def __str__(self) -> str:
        return f"Store unavailable: {self.detail}"


class StoreLost(StoreError):
    """A store call whose end is unknown, so a write may have been committed: the store process
    ended with it in hand, or the database's connection was lost once its COMMIT had gone."""


class StoreBug(RuntimeError):
    """A write or read the store failed on a bug, having stored nothing (its transaction rolled
    back, or the request never left): a 500, with its traceback in the log."""
