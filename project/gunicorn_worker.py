"""The web role's gunicorn worker: a request gunicorn refuses is answered in the API's shape."""

import json
import socket
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

# The API's error codes (sync.exceptions, REST framework) of the answers gunicorn gives itself.
CODES = {400: "invalid", 403: "permission_denied", 431: "invalid", 501: "not_implemented"}


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Write gunicorn's own error answer as {"code", "detail"}, as every dbsync error is."""
    detail = f"{reason}: {mesg}" if mesg else reason
    if "Request Line is too large" in mesg:
        detail += ": the request line (method, path and query) is longer than the server takes"
    body = json.dumps({"code": CODES.get(status_int, "server_error"), "detail": detail})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin1"))


class JSONErrorWorker(ThreadWorker):
    """gunicorn's threaded worker, writing the answers it gives itself as JSON."""

    def init_process(self) -> Any:
        util.write_error = write_json_error  # the worker's module reads it from util at each use
        return super().init_process()
