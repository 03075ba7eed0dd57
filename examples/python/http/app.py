"""An HTTP service in Python: a wasi:http/proxy component made by componentize-py.

- POST .../upper answers the body upper-cased, chunk by chunk;
- any other request answers with its method and path (and query)."""

from componentize_py_types import Ok, Err
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)
from wit_world.imports.streams import StreamError_Closed


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        method = request.method()
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        out = body.write()
        if isinstance(method, Method_Post) and path.split("?")[0].endswith("/upper"):
            incoming = request.consume()
            stream = incoming.stream()
            while True:
                try:
                    chunk = stream.blocking_read(65536)
                except Err as e:
                    if isinstance(e.value, StreamError_Closed):
                        break
                    raise
                for i in range(0, len(chunk), 4096):
                    out.blocking_write_and_flush(chunk[i:i + 4096].upper())
        else:
            name = type(method).__name__.removeprefix("Method_").upper()
            out.blocking_write_and_flush(f"{name} {path} (python)\n".encode())
        out.__exit__(None, None, None)
        OutgoingBody.finish(body, None)
