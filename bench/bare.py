"""The ceiling: a bare ASGI app that only reads the body and returns a fixed JSON."""

from starlette.types import Message, Receive, Scope, Send

_BODY = b'{"success":true,"metrics":{"accuracy":1.0,"precision":1.0,"recall":1.0,"f1_score":1.0}}'
_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json")],
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(_START)
    await send({"type": "http.response.body", "body": _BODY})
