"""Reading a JSON request body from raw ASGI: media type first, then a hard size limit."""

from starlette.types import Receive, Scope

from feedback_monitor.errors import ClientError

JSON = b"application/json"


def _headers(scope: Scope) -> tuple[bytes, bytes]:
    content_type = content_length = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            content_length = value
    return content_type, content_length


async def read_json_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body, or ``ClientError`` 415 for another media type and 413 past ``limit`` bytes."""
    content_type, content_length = _headers(scope)
    if content_type.partition(b";")[0].strip().lower() != JSON:
        raise ClientError(415, "Content-Type must be application/json", "unsupported_media_type")
    if content_length.isascii() and content_length.isdigit() and int(content_length) > limit:
        raise _too_large(limit)  # refused before reading a byte of it
    chunks = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientError(400, "Client disconnected before the body ended", "disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one copy of a large body


def _too_large(limit: int) -> ClientError:
    return ClientError(413, f"Body larger than {limit} bytes", "body_too_large")
