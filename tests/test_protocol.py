"""One send per response: the status line and headers wait for the body, and for nothing else."""

from feedback_monitor.protocol import OneSendPerResponse

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recording:
    """The part of an asyncio transport the wrapper uses, remembering every system call."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


def wrapped() -> tuple[OneSendPerResponse, Recording]:
    inner = Recording()
    return OneSendPerResponse(inner), inner  # type: ignore[arg-type]


def test_headers_and_body_leave_in_one_send() -> None:
    transport, inner = wrapped()
    transport.write(HEAD)
    assert inner.sent == []
    transport.write(b"{}")
    assert inner.sent == [HEAD + b"{}"]


def test_later_body_chunks_go_as_they_come() -> None:
    transport, inner = wrapped()
    for data in (HEAD, b"one", b"two"):
        transport.write(data)
    assert inner.sent == [HEAD + b"one", b"two"]


def test_100_continue_is_not_held() -> None:
    transport, inner = wrapped()
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert inner.sent == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_a_response_without_body_is_sent_when_it_ends() -> None:
    transport, inner = wrapped()
    transport.write(HEAD)
    transport.flush()
    transport.flush()
    assert inner.sent == [HEAD]


def test_close_sends_what_is_held_first() -> None:
    transport, inner = wrapped()
    transport.write(HEAD)
    transport.close()
    assert inner.sent == [HEAD]
    assert inner.closed
    assert transport.is_closing()


def test_what_is_written_once_closed_is_dropped() -> None:
    """uvloop raises on a closed connection; an answer to a client that left goes nowhere."""
    transport, inner = wrapped()
    transport.close()
    transport.write(HEAD)
    transport.write(b"{}")
    transport.flush()
    assert inner.sent == []


def test_everything_else_is_the_transport_s() -> None:
    transport, _ = wrapped()
    assert transport.get_extra_info("peername") == "info peername"
