"""Keep passwords out of anything shown or logged."""

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """Return the URL with its password replaced by ***, safe to show and log."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def scrub(message: str, url: str) -> str:
    """Return the message with the URL's password, if any, replaced by ***."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return message.replace(password, "***") if password else message
