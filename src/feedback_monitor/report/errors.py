"""The failures a report can have: a message for its user, and the exit status, as ``replay``'s:
2 for a bad flag (``BadFlag``), 1 for anything else (the service unreachable or refusing, an
unknown series, an output that cannot be written)."""


class ReportError(Exception):
    """A report that failed; ``message`` is one line."""

    status = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadFlag(ReportError):
    """A flag, or the environment variable standing for one, that cannot be used."""

    status = 2
