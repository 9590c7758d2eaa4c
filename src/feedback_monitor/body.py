"""Reading a JSON request body from raw ASGI: media type first, then a hard size limit and a
deadline between chunks, so that a client that stops sending halfway holds nothing for long."""

import asyncio
import math
from typing import Any

from starlette.types import Message, Receive, Scope

from feedback_monitor.errors import ClientError

JSON = b"application/json"
DEFAULT_TIMEOUT = 30.0  # seconds a body may pause between two chunks
_EXPIRED = "body read deadline"


def _headers(scope: Scope) -> tuple[bytes, bytes, bytes]:
    content_type = content_length = content_encoding = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            content_length = value
        elif name == b"content-encoding":
            content_encoding = value
    return content_type, content_length, content_encoding


class Deadlines:
    """Cancels the body reads still waiting ``timeout`` seconds (to one more) after they began.

    A timer per request would cost more than the rest of reading a small body (``make bench``);
    here the reads of one second share one timer, and a read costs a set insertion.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.due: dict[int, set[asyncio.Task[Any]]] = {}

    async def receive(self, receive: Receive) -> Message:
        """``receive()``, or ``Refused`` 408 when it takes longer than the deadline."""
        if _arrived(receive):
            return await receive()  # answers at once: nothing to watch
        task = asyncio.current_task()
        assert task is not None
        second = self._watch(task)
        try:
            return await receive()
        except asyncio.CancelledError as error:
            if error.args != (_EXPIRED,):
                raise
            task.uncancel()
            raise _timed_out(self.timeout) from None
        finally:
            self.due.get(second, set()).discard(task)

    def _watch(self, task: "asyncio.Task[Any]") -> int:
        loop = asyncio.get_running_loop()
        second = math.ceil(loop.time() + self.timeout)
        tasks = self.due.get(second)
        if tasks is None:
            tasks = self.due[second] = set()
            loop.call_at(second, self._expire, second)
        tasks.add(task)
        return second

    def _expire(self, second: int) -> None:
        for task in self.due.pop(second, ()):
            task.cancel(_EXPIRED)


def _arrived(receive: Receive) -> bool:
    """Whether uvicorn already holds the next message (the whole body of nearly every request:
    it arrives with the headers); any other ``receive`` may wait."""
    cycle = getattr(receive, "__self__", None)
    event = getattr(cycle, "message_event", None)
    return isinstance(event, asyncio.Event) and event.is_set()


async def read_json_body(scope: Scope, receive: Receive, limit: int, deadlines: Deadlines) -> bytes:
    """The body, or ``ClientError`` 415 for another media type, 413 past ``limit`` bytes and
    408 when a chunk does not arrive in time (see ``Deadlines``)."""
    _check_headers(scope, limit)
    chunks = []
    size = 0
    more = True
    while more:
        chunk, more = _chunk(await deadlines.receive(receive))
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one copy of a large body


def check_whole_body(scope: Scope, body: bytes, limit: int) -> None:
    """The checks of ``read_json_body`` on a body already read whole."""
    _check_headers(scope, limit)
    if len(body) > limit:  # a chunked body declares no length
        raise _too_large(limit)


def _check_headers(scope: Scope, limit: int) -> None:
    content_type, content_length, content_encoding = _headers(scope)
    media, _, parameters = content_type.partition(b";")
    if media.strip().lower() != JSON:
        raise ClientError(415, "Content-Type must be application/json", "unsupported_media_type")
    if parameters and not _utf8(parameters):  # a body in UTF-16 would be read as UTF-8
        message = "Content-Type charset must be utf-8, JSON's"
        raise ClientError(415, message, "unsupported_charset")
    if content_encoding.strip().lower() not in (b"", b"identity"):  # a gzip body, say
        message = "Content-Encoding is not supported: send the body uncompressed"
        raise ClientError(415, message, "unsupported_content_encoding")
    if content_length.isascii() and content_length.isdigit() and int(content_length) > limit:
        raise _too_large(limit)  # refused before reading a byte of it


def _utf8(parameters: bytes) -> bool:
    """Whether a media type's parameters name no charset but UTF-8."""
    for parameter in parameters.split(b";"):
        name, _, value = parameter.partition(b"=")
        if name.strip().lower() == b"charset":
            return value.strip().strip(b'"').lower() in (b"utf-8", b"utf8")
    return True


def _chunk(message: Message) -> tuple[bytes, bool]:
    if message["type"] == "http.disconnect":
        raise ClientError(400, "Client disconnected before the body ended", "disconnected")
    return message.get("body", b""), message.get("more_body", False)


def _too_large(limit: int) -> ClientError:
    return ClientError(413, f"Body larger than {limit} bytes", "body_too_large")


def _timed_out(timeout: float) -> ClientError:
    # The rest of the body may still come: the connection cannot carry another request.
    message = f"Body not received: no data for {timeout:g} s"
    return ClientError(408, message, "body_timeout", headers={"Connection": "close"})
