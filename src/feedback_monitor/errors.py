"""Client errors that carry their status, message and a stable reason label."""


class ClientError(Exception):
    """A request the client must change; mapped to ``status`` only at the HTTP edge."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
