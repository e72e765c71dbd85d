"""Settings of dbsync, read from the environment; the only module that reads it."""

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

# Django's ModelAdmin and ModelForm accept type arguments at run time, as in django-stubs: sync's
# subclasses name their model (sync/admin.py).
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_int(name: str, default: int, least: int = 1) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a whole number of seconds, got {raw!r}"
        ) from None
    if value < least:
        raise ImproperlyConfigured(f"{name} must be at least {least}, got {value}")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def _parse_sync_databases(raw: str) -> dict[str, str]:
    """Parse SYNC_DATABASES: comma-separated name=postgresql://... pairs."""
    databases: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise ImproperlyConfigured(
                "SYNC_DATABASES must be comma-separated name=postgresql://... pairs; "
                f"an entry has no name=URL form (entry {len(databases) + 1})"
            )
        databases[name.strip()] = url.strip()
    return databases


def _fernet_keys(raw: str) -> list[str]:
    """Parse SYNC_SECRET_KEYS: comma-separated Fernet keys, the first of which encrypts."""
    from cryptography.fernet import Fernet

    keys = [key.strip() for key in raw.split(",") if key.strip()]
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"SYNC_SECRET_KEYS: key {number} is not a Fernet key (32 url-safe base64-encoded "
                "bytes, as cryptography.fernet.Fernet.generate_key() makes)"
            ) from None
    return keys


def _redis_url(base: str, offset: int) -> str:
    """Return the Redis URL of database number base-db + offset on the same server."""
    parts = urlsplit(base)
    if parts.scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(f"REDIS_URL must start with redis:// or rediss://, got {base!r}")
    path = parts.path.strip("/")
    try:
        first_db = int(path) if path else 0
    except ValueError:
        raise ImproperlyConfigured(
            f"REDIS_URL must end in a database number, got {path!r}"
        ) from None
    return urlunsplit(parts._replace(path=f"/{first_db + offset}"))


AMQP_SCHEMES = {"amqp", "amqps", "pyamqp"}


def _broker_url(raw: str, default: str) -> str:
    """Check SYNC_BROKER_URL: a Redis or RabbitMQ (AMQP) URL; empty means Redis' database 0."""
    if not raw:
        return default
    scheme = urlsplit(raw).scheme
    if scheme not in {"redis", "rediss"} | AMQP_SCHEMES:
        raise ImproperlyConfigured(
            "SYNC_BROKER_URL must start with redis://, rediss://, amqp:// or amqps:// "
            f"(got a URL of scheme {scheme!r})"
        )
    return raw


def _broker_options(kind: str) -> dict[str, Any]:
    """Return the broker's transport options: Redis' visibility timeout, RabbitMQ's confirms."""
    if kind == "amqp":
        # The broker confirms each message before a publish returns: none lost in between.
        return {"confirm_publish": True, "connect_timeout": 1, "read_timeout": 10}
    return {"visibility_timeout": 3600, "socket_connect_timeout": 1, "socket_timeout": 10}


DEBUG = _env_bool("DEBUG", False)
# Required with DEBUG off: web, worker and commands refuse to start without it (sync.checks).
# `make run` generates one into .run/ when the environment sets none.
SECRET_KEY = os.environ.get("SECRET_KEY", "dbsync-debug-only-key" if DEBUG else "")
# Encrypt database URLs at rest; independent of SECRET_KEY. Required with DEBUG off.
SYNC_SECRET_KEYS = _fernet_keys(os.environ.get("SYNC_SECRET_KEYS", ""))
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "sync",
]

MIDDLEWARE = [
    # First and last: django-prometheus times every request and counts it by view and status.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and Swagger UI's static files under gunicorn, no web server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",  # request.htmx: the pages answer polls
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "project.urls"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "databases"
LOGOUT_REDIRECT_URL = "login"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# The service database: where dbsync keeps its own models.
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/dbsync")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except ValueError as error:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {error}") from None
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
# The same PostgreSQL backend, counting connections, queries and errors for /metrics.
DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
# Before each request, a kept connection is checked: after the server restarted, the
# request opens a new one instead of failing on the dead one.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: results, cache and reflection state live in separate databases of one server, and the
# broker too unless SYNC_BROKER_URL names another (RabbitMQ), so that clearing the cache can
# never wipe the task queue or the leases (sync.changes).
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = _broker_url(os.environ.get("SYNC_BROKER_URL", ""), _redis_url(REDIS_URL, 0))
CELERY_RESULT_BACKEND = _redis_url(REDIS_URL, 1)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _redis_url(REDIS_URL, 2),
        "KEY_PREFIX": "dbsync",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}
SYNC_STATE_REDIS_URL = _redis_url(REDIS_URL, 3)

# Celery. A queued task's lease lasts SYNC_LOCK_TTL, less than the broker's visibility timeout,
# so a message of a dead worker comes back only once its lease is long gone. A running task
# holds a lease of SYNC_LEASE_SECONDS and renews it every third of that: a worker that dies
# is forgotten within SYNC_LEASE_SECONDS, and the next request queues anew.
SYNC_TASK_SOFT_TIME_LIMIT = 240
SYNC_TASK_TIME_LIMIT = 300
SYNC_LOCK_TTL = 360
SYNC_LEASE_SECONDS = _env_int("SYNC_LEASE_SECONDS", 30, least=3)
# "amqp" (RabbitMQ) or "redis": what the publisher's timeouts and the queue depths depend on.
SYNC_BROKER_KIND = "amqp" if urlsplit(CELERY_BROKER_URL).scheme in AMQP_SCHEMES else "redis"
CELERY_BROKER_TRANSPORT_OPTIONS = _broker_options(SYNC_BROKER_KIND)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = True  # for Flower
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long tasks: do not hoard messages
CELERY_TIMEZONE = "UTC"
# django-celery-beat's scheduler under a lock in Redis (worker/beat.py): two beats may run, one
# schedules; the other takes over within SYNC_BEAT_LOCK_SECONDS and a second of its death.
CELERY_BEAT_SCHEDULER = "worker.beat:LockedDatabaseScheduler"
SYNC_BEAT_LOCK_SECONDS = _env_int("SYNC_BEAT_LOCK_SECONDS", 6, least=3)
# Three queues (sync.changes.queues): `interactive` for what a person or a change waits on, `bulk`
# for renewal, polls, imports and purges, `webhooks` for deliveries to receivers, so that a slow
# receiver never holds a reflection up; each has its own workers (Procfile: worker, worker-bulk,
# worker-webhooks).
CELERY_TASK_ROUTES = ("sync.changes.queues.route_task",)
CELERY_TASK_DEFAULT_QUEUE = "interactive"

# Synchronisation.
SYNC_REFLECTION_INTERVAL = _env_int("SYNC_REFLECTION_INTERVAL", 300)
# The least time between the end of a reflection and the next that list traffic queues: a
# recency key lost early (a cache flush, an eviction) cannot set off one per request.
SYNC_MIN_REFLECTION_GAP = _env_int("SYNC_MIN_REFLECTION_GAP", 10, least=0)
# Seconds the gate stops asking Redis after it failed to answer (sync/breaker.py); 0: always ask.
SYNC_REDIS_COOLDOWN = _env_int("SYNC_REDIS_COOLDOWN", 5, least=0)
SYNC_DATABASES = _parse_sync_databases(os.environ.get("SYNC_DATABASES", ""))
# Seconds between checks of a database's catalog for changes made behind dbsync's back: by the
# watch's version counter where `manage.py watch` installed it, else by the fingerprint; 0: none.
SYNC_POLL_INTERVAL = _env_int("SYNC_POLL_INTERVAL", 30, least=0)
# Seconds a LISTEN connection may stay silent before the listener checks it with a query.
SYNC_LISTEN_HEARTBEAT = _env_int("SYNC_LISTEN_HEARTBEAT", 10)
# Listeners share the watched databases under leases of this many seconds, renewed every third
# of it: the databases of a listener that died are taken over within it and one refresh (2 s).
SYNC_LISTENER_LEASE_SECONDS = _env_int("SYNC_LISTENER_LEASE_SECONDS", 6, least=3)
# Where the watch cannot NOTIFY (a server that allows prepared transactions), the listener asks
# each database's counter this often, on the connection it keeps: one tiny query per interval.
SYNC_LISTEN_POLL_MS = _env_int("SYNC_LISTEN_POLL_MS", 100, least=10)
# The watch's change log keeps this many rows at most, whether or not dbsync reads it.
SYNC_CHANGE_LOG_CAP = _env_int("SYNC_CHANGE_LOG_CAP", 100_000, least=1000)
# The push channel (Procfile role `push`, sync.web.pages.push): open pages hear of each
# reflection over Server-Sent Events from this port, or from SYNC_PUSH_URL where a proxy serves
# it (a URL or a path, such as /push); blank: the page's host at SYNC_PUSH_PORT. "off": pages poll.
SYNC_PUSH_PORT = _env_int("SYNC_PUSH_PORT", 8001, least=1)
SYNC_PUSH_URL = os.environ.get("SYNC_PUSH_URL", "").strip().rstrip("/")
# Seconds between the comments that keep an idle stream open through proxies and find a closed
# tab; a stream ends after SYNC_PUSH_STREAM_SECONDS and the browser reconnects, its access
# checked again.
SYNC_PUSH_HEARTBEAT = _env_int("SYNC_PUSH_HEARTBEAT", 25, least=1)
SYNC_PUSH_STREAM_SECONDS = _env_int("SYNC_PUSH_STREAM_SECONDS", 600, least=1)
SYNC_STATEMENT_TIMEOUT = _env_int("SYNC_STATEMENT_TIMEOUT", 5)
SYNC_CONNECT_TIMEOUT = _env_int("SYNC_CONNECT_TIMEOUT", 5)
# Records are cut in the statement that reads them: a value whose text is longer than
# SYNC_CELL_CHARS characters comes as its first SYNC_CELL_CHARS, with its length; a page holds
# fewer rows where its columns could hold more than SYNC_PAGE_CHARS; one whole value is read on
# request up to SYNC_VALUE_CHARS. So an answer and a worker's memory stay bounded.
SYNC_CELL_CHARS = _env_int("SYNC_CELL_CHARS", 2000)
SYNC_PAGE_CHARS = _env_int("SYNC_PAGE_CHARS", 8_000_000)
SYNC_VALUE_CHARS = _env_int("SYNC_VALUE_CHARS", 16_000_000)
SYNC_RETENTION_DAYS = _env_int("SYNC_RETENTION_DAYS", 30)
# Webhooks (sync.ops.webhooks): each delivery is tried up to SYNC_WEBHOOK_MAX_ATTEMPTS times, the
# waits doubling from SYNC_WEBHOOK_RETRY_SECONDS (10 s) to 5 min, each POST given
# SYNC_WEBHOOK_TIMEOUT seconds. A URL whose host resolves to a loopback, private or link-local
# address is refused unless SYNC_WEBHOOK_ALLOW_PRIVATE is true (a receiver on the same network,
# the tests' own).
SYNC_WEBHOOK_MAX_ATTEMPTS = _env_int("SYNC_WEBHOOK_MAX_ATTEMPTS", 12)
SYNC_WEBHOOK_RETRY_SECONDS = _env_int("SYNC_WEBHOOK_RETRY_SECONDS", 10)
SYNC_WEBHOOK_TIMEOUT = _env_int("SYNC_WEBHOOK_TIMEOUT", 10)
SYNC_WEBHOOK_ALLOW_PRIVATE = _env_bool("SYNC_WEBHOOK_ALLOW_PRIVATE", False)

# Scale (sync.changes.polling, sync.remote.connections). Each renewal tick queues at most
# SYNC_RENEWAL_IN_FLIGHT reflections less those still queued or running, with countdowns spread
# over the next SYNC_RENEWAL_SPREAD seconds (the tick's period); a countdown must stay far below
# the broker's visibility timeout, or Redis hands the message out twice.
SYNC_RENEWAL_IN_FLIGHT = _env_int("SYNC_RENEWAL_IN_FLIGHT", 100)
SYNC_RENEWAL_SPREAD = _env_int("SYNC_RENEWAL_SPREAD", 60, least=0)
# (Redis' visibility timeout, 3600 s; RabbitMQ has none, and keeps the same bound.)
_LONGEST_COUNTDOWN = 3600 // 10
if SYNC_RENEWAL_SPREAD > _LONGEST_COUNTDOWN:
    raise ImproperlyConfigured(
        f"SYNC_RENEWAL_SPREAD must be at most {_LONGEST_COUNTDOWN} seconds, a tenth of the "
        f"broker's visibility timeout; got {SYNC_RENEWAL_SPREAD}"
    )
# Connections to registered databases: each process keeps pooled connections (one each) to at
# most SYNC_POOLED_DATABASES databases for on-the-fly reads, and opens at most
# SYNC_CONNECTIONS_PER_SERVER at once to any one server; reflections close theirs after use.
SYNC_POOLED_DATABASES = _env_int("SYNC_POOLED_DATABASES", 4, least=0)
SYNC_CONNECTIONS_PER_SERVER = _env_int("SYNC_CONNECTIONS_PER_SERVER", 4)

# Metrics (sync.metrics) at /metrics: readable by staff, or with this bearer token.
SYNC_METRICS_TOKEN = os.environ.get("SYNC_METRICS_TOKEN", "")
# Every process of a host writes its metrics here and /metrics sums them (prometheus-client's
# multiprocess mode, set before anything imports it); empty it when the service starts.
PROMETHEUS_MULTIPROC_DIR = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", str(BASE_DIR / ".run" / "metrics")
)
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

# The admin user that `make run` creates for the demo (when no user of that name exists).
DEMO_ADMIN_PASSWORD = os.environ.get("DEMO_ADMIN_PASSWORD", "dbsync-demo")
# Flower's login, user:password; `make run` prints it beside the admin's.
FLOWER_BASIC_AUTH = os.environ.get("FLOWER_BASIC_AUTH", "")

# Failed logins (API or admin) from one address, or for one user name, within the window:
# beyond the limit, further attempts are refused before any password is hashed.
SYNC_LOGIN_FAILURE_LIMIT = _env_int("SYNC_LOGIN_FAILURE_LIMIT", 10)
SYNC_LOGIN_FAILURE_WINDOW = _env_int("SYNC_LOGIN_FAILURE_WINDOW", 300)
AUTHENTICATION_BACKENDS = ["sync.web.throttling.ThrottledModelBackend"]

REST_FRAMEWORK = {
    # Token first: an anonymous API client is told (401, WWW-Authenticate) how to log in.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "sync.web.throttling.ThrottledBasicAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": os.environ.get("SYNC_ANON_RATE", "60/minute")},
    "DEFAULT_PERMISSION_CLASSES": ["sync.web.api.permissions.ReadAuthenticatedWriteStaff"],
    "DEFAULT_PAGINATION_CLASS": "sync.web.api.pagination.StrictLimitOffsetPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "sync.web.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "dbsync API",
    "DESCRIPTION": "Schemas, tables and views of registered PostgreSQL databases.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,  # the schema documents the API, not itself
    # Swagger UI's files from the project itself (drf-spectacular-sidecar), not a public CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".run" / "static"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
