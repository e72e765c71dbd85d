"""The push channel: a Server-Sent Events stream that tells an open page its database changed.

Served by the push role (uvicorn, project.asgi): an async view holds each stream without a
thread, and all streams of the process share one Redis subscription (sync.changes.pushing).
The stream carries ids only: on `changed`, the page sends its usual poll, which answers 204
when nothing it shows changed. Access is the pages' own: a stream of a database the user may
not read is a 404, as the page is, and the databases page hears only the databases granted.
Under gunicorn (WSGI) the view answers 503 at once and the page keeps polling.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TypeVar
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from sync.changes.pushing import hub
from sync.web import access

R = TypeVar("R", bound=HttpResponseBase)


def push_url(request: HttpRequest, database_id: int | None = None) -> str:
    """Return where a page's EventSource connects: SYNC_PUSH_URL, else its host's push port.

    The pages connect to the stream of every readable database, which one connection serves
    for all the tabs of a browser (static/sync/push-worker.js); each tab keeps its own events.
    """
    path = "/push/" if database_id is None else f"/push/databases/{database_id}/"
    if settings.SYNC_PUSH_URL == "off":
        return ""
    if settings.SYNC_PUSH_URL:
        return settings.SYNC_PUSH_URL + path.removeprefix("/push")
    host = urlsplit(f"//{request.get_host()}").hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"{request.scheme}://{host}:{settings.SYNC_PUSH_PORT}{path}"


@require_GET
async def stream(request: HttpRequest, database_id: int | None = None) -> HttpResponseBase:
    """Stream `changed` events of the database (or of every readable one) to a logged-in user."""
    if not isinstance(request, ASGIRequest):
        return HttpResponse("the push channel is served by the push role", status=503)
    user = await request.auser()
    if not user.is_authenticated:
        return cors(request, HttpResponse("log in first", status=403))
    database_ids = await sync_to_async(readable_ids)(user, database_id)
    if database_ids is None:
        return cors(request, HttpResponse("no such database", status=404))
    response = StreamingHttpResponse(events(database_ids), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return cors(request, response)


def readable_ids(user: object, database_id: int | None) -> set[int] | None:
    """Return the ids to hear: the one database (None if not readable), or every readable one.

    An empty set is every database, which only staff hear.
    """
    readable = access.readable_databases(user)
    if database_id is not None:
        return {database_id} if readable.filter(pk=database_id).exists() else None
    if getattr(user, "is_staff", False):
        return set()
    return set(readable.values_list("id", flat=True)) or {-1}


async def events(database_ids: set[int]) -> AsyncIterator[str]:
    """Yield `ready`, then a `changed` per reflection, comments while idle, and end in time.

    Ending after SYNC_PUSH_STREAM_SECONDS makes the browser reconnect, and so check the
    user's access again.
    """
    yield "retry: 1000\nevent: ready\ndata: \n\n"
    deadline = time.monotonic() + settings.SYNC_PUSH_STREAM_SECONDS
    async with hub.subscription(database_ids) as queue:
        while (left := deadline - time.monotonic()) > 0:
            try:
                changed = await asyncio.wait_for(
                    queue.get(), min(left, settings.SYNC_PUSH_HEARTBEAT)
                )
            except TimeoutError:
                yield ": idle\n\n"
                continue
            yield f"event: changed\ndata: {changed}\n\n"


def cors(request: HttpRequest, response: R) -> R:
    """Let the pages, served from another port of the same host, read the stream.

    Only an origin on the host this stream was asked of: the session cookie goes to every
    port of a host, so that is where the trust already lies.
    """
    origin = request.headers.get("Origin", "")
    if origin and urlsplit(origin).hostname == urlsplit(f"//{request.get_host()}").hostname:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Credentials"] = "true"
        response["Vary"] = "Origin"
    return response
