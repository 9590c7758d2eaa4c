"""The ceiling: a bare ASGI app that only reads the body and returns a fixed JSON.

``python -m bench.bare PORT`` serves it on this service's own protocol (``protocol.py``) rather
than uvicorn's: what the ceiling would be with the server layer the service runs on.
"""

import sys

import uvicorn
from starlette.types import Message, Receive, Scope, Send

from feedback_monitor.cli import server_stack
from feedback_monitor.settings import Settings

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


if __name__ == "__main__":
    header_timeout = Settings.model_fields["header_timeout"].default  # the service's default
    uvicorn.run(app, port=int(sys.argv[1]), log_level="warning", **server_stack(header_timeout))
