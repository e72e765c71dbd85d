"""Which webhook URLs dbsync may call: http(s) to hosts that resolve to public addresses only.

The check is by the resolved address, not by the name (a name can point anywhere), at
registration and again before every delivery, so that a name re-pointed at an internal
address since is refused then (SYNC_WEBHOOK_ALLOW_PRIVATE lifts it, for local receivers). A
delivery connects to the addresses this check vetted, never resolving the name again: a name
that answers a public address to the check and a private one a moment later (DNS rebinding)
still gets only the public one.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from sync.exceptions import WebhookRefused


@dataclass(frozen=True)
class Target:
    """A webhook URL as a delivery calls it: the addresses its host resolved to when checked."""

    scheme: str
    host: str
    port: int
    path: str  # with the query, if any
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        """The Host header a browser would send for the URL: the port only where it is not the
        scheme's own, an IPv6 address in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def check_url(url: str) -> Target:
    """Return the URL's target; raise WebhookRefused unless it is http(s) to a host whose
    addresses are all public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"a webhook URL must be http:// or https:// with a host: {url!r}")
    if parts.username or parts.password:
        raise WebhookRefused("a webhook URL may not carry a user or password: sign with the secret")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as error:
        raise WebhookRefused(f"the host of {url!r} does not resolve: {error}") from None
    addresses = tuple(dict.fromkeys(str(address[0]) for *_, address in found))
    if not settings.SYNC_WEBHOOK_ALLOW_PRIVATE:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not ip.is_global or ip.is_multicast:
                raise WebhookRefused(
                    f"the host of {url!r} resolves to {ip}, a loopback, private or link-local "
                    "address: refused (set SYNC_WEBHOOK_ALLOW_PRIVATE=true to allow it)"
                )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path, addresses)
