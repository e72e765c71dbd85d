"""Keep passwords out of anything shown or logged, in every form libpq accepts them.

A libpq connection string carries a password in the user info of a URL (percent-encoded or
not), in `password=` or `sslpassword=` query parameters (whose names may be percent-encoded
too), or as `password=...` in a keyword/value string (quoted or not).
"""

import re
from urllib.parse import unquote

HIDDEN = "***"
SECRET_KEYWORDS = {"password", "sslpassword"}

# keyword = value in a libpq keyword/value string: a value is 'quoted' (with \' and \\
# escapes) or runs to the next blank.
KEYWORD_VALUE = re.compile(
    r"(?P<key>\b(?:ssl)?password\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'?|\S+)", re.IGNORECASE
)
URL_START = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Shorter pieces of a password (split at '@', ':' or '/') are not searched for in messages:
# they would hide ordinary words, and a piece that short says little of the password.
LEAST_PIECE = 4


def redact_url(url: str) -> str:
    """Return the connection string with every password in it replaced by ***."""
    if not URL_START.match(url):
        return KEYWORD_VALUE.sub(lambda match: match["key"] + HIDDEN, url)
    scheme, _, rest = url.partition("://")
    if ambiguity(url):
        # Where the user info ends is unclear: hide all up to the last '@'.
        authority, path, query = _split(rest.rpartition("@")[2])
        return f"{scheme}://{HIDDEN}@{authority}{path}{_redact_query(query)}"
    authority, path, query = _split(rest)
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:{HIDDEN}@{host}"
    return f"{scheme}://{authority}{path}{_redact_query(query)}"


def redact(text: str, url: str) -> str:
    """Return the text with every password of the connection string replaced by ***."""
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return KEYWORD_VALUE.sub(lambda match: match["key"] + HIDDEN, text)


def secrets_of(url: str) -> set[str]:
    """Return each password of the connection string, as written and percent-decoded."""
    found: set[str] = set()
    if URL_START.match(url):
        rest = url.partition("://")[2]
        authority, _path, query = _split(rest)
        userinfo = (rest if ambiguity(url) else authority).rpartition("@")[0]
        password = userinfo.partition(":")[2]
        if password:
            found |= {password, *_pieces(password)}
        for key, _, value in (pair.partition("=") for pair in query[1:].split("&") if pair):
            if unquote(key).strip().lower() in SECRET_KEYWORDS and value:
                found.add(value)
    else:
        for match in KEYWORD_VALUE.finditer(url):
            value = match["value"]
            found.add(value)
            if value.startswith("'"):
                found.add(re.sub(r"\\(.)", r"\1", value.strip("'")))
    found |= {unquote(secret) for secret in found}
    return {secret for secret in found if secret}


def ambiguity(url: str) -> str:
    """Return why libpq might read the URL's user info otherwise than it looks, or ''."""
    if not URL_START.match(url):
        return ""
    authority, path, query = _split(url.partition("://")[2])
    pairs = [pair for pair in query[1:].split("&") if pair]
    if authority.count("@") > 1 or "@" in path or any("@" in p.partition("=")[0] for p in pairs):
        return (
            "the user name or password in the URL holds a character that ends it early "
            "('@', '/', '?' or '#'): write those percent-encoded, '@' as %40, '/' as %2F, "
            "'?' as %3F, '#' as %23, ':' as %3A (Python: urllib.parse.quote(password, safe=''))"
        )
    return ""


def _split(rest: str) -> tuple[str, str, str]:
    """Split what follows scheme:// into authority, path and query (with its '?')."""
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, after = rest[:end], rest[end:]
    path, mark, query = after.partition("?")
    return authority, path, mark + query


def _redact_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for pair in query[1:].split("&"):
        key, equals, _value = pair.partition("=")
        hidden = equals and unquote(key).strip().lower() in SECRET_KEYWORDS
        pairs.append(f"{key}={HIDDEN}" if hidden else pair)
    return "?" + "&".join(pairs)


def _pieces(password: str) -> set[str]:
    """Return the parts of a password that libpq may show alone (in a host or database name)."""
    return {piece for piece in re.split(r"[@:/?#]", password) if len(piece) >= LEAST_PIECE}
