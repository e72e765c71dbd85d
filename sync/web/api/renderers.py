"""The API's JSON renderer: json and jsonb values are written as PostgreSQL holds them."""

import secrets
from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import JSONRenderer

from sync.remote.values import RawJSON


class ExactJSONRenderer(JSONRenderer):
    """Write each RawJSON as its own text, so that a JSON number in it keeps every digit.

    The json module has no way to write text as it is: each RawJSON goes in as a placeholder
    string made of a fresh random token, and its text replaces the placeholder afterwards.
    """

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        raws: list[RawJSON] = []
        token = secrets.token_hex(16)
        marked = _marked(data, raws, token)
        body: bytes = super().render(marked, accepted_media_type, renderer_context)
        if not raws:
            return body
        parts = body.split(f'"{token}:'.encode())
        out = [parts[0]]
        for part in parts[1:]:
            index, _, rest = part.partition(b'"')
            out += [raws[int(index)].encode(), rest]
        return b"".join(out)


def _marked(data: Any, raws: list[RawJSON], token: str) -> Any:
    """Return data with each RawJSON replaced by the placeholder "token:index"."""
    if isinstance(data, RawJSON):
        raws.append(data)
        return f"{token}:{len(raws) - 1}"
    if isinstance(data, list | tuple):
        return [_marked(item, raws, token) for item in data]
    if isinstance(data, dict):
        return {key: _marked(value, raws, token) for key, value in data.items()}
    return data
