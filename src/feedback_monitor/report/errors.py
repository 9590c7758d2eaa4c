"""The one failure a report can have: a message for its user, and exit status 2."""


class ReportError(Exception):
    """A bad flag, an unknown series or an unreachable service; ``message`` is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
