"""One settings module for every deployment, driven by environment variables.

Every variable is described in docs/configuration.md. Values are parsed strictly (config/env.py): a
malformed value stops start-up with ImproperlyConfigured naming the variable. The process environment
wins over the local `.env` file that `make run` writes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from config import logs
from config.env import env, flag, integer, mandatory, secret, url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded database and broker live here
env.read_env(BASE_DIR / ".env", overwrite=False)  # the process environment wins over `.env`

SECRET_KEY = secret("SECRET_KEY", required=True)
# Comma-separated Fernet keys: the first encrypts, all decrypt (add a new key in front to rotate).
FIELD_ENCRYPTION_KEY = mandatory("FIELD_ENCRYPTION_KEY")
DEBUG = flag("DEBUG", False)

# --- LimaCharlie -------------------------------------------------------------------------------
LC_SHARED_SECRET = secret("LC_SHARED_SECRET", required=False)
# During a rotation of the Shared Secret, the one LimaCharlie may still sign with: LimaCharlie never
# retries a 401, so without it every alert between the two changes would be lost.
LC_SHARED_SECRET_PREVIOUS = secret("LC_SHARED_SECRET_PREVIOUS", required=False)
LC_API_URL = url("LC_API_URL", "https://api.limacharlie.io")
LC_API_TIMEOUT_SECONDS = integer("LC_API_TIMEOUT_SECONDS", 10, 1, 110)
# How long a web process reuses a credential it read from the Secrets Manager for the same organisation
# and secret before reading it again (0: read it on every call). See services/credentials.py.
CREDENTIAL_CACHE_SECONDS = integer("CREDENTIAL_CACHE_SECONDS", 60, 0, 3600)
# The cap applies to the body *after* gunzip: gzip is checked before the signature, so an
# unauthenticated caller could otherwise make us inflate a bomb.
LC_MAX_BODY_BYTES = integer("LC_MAX_BODY_BYTES", 1_048_576, 1_024, 67_108_864)
# Events for the organisation's LimaCharlie (its webhook adapter, deliveries/services/events.py). The
# hook base replaces https://<the organisation's hook domain> when set (tests, private deployments).
LC_HOOK_BASE_URL = url("LC_HOOK_BASE_URL", "")
LC_HOOK_TIMEOUT_SECONDS = integer("LC_HOOK_TIMEOUT_SECONDS", 10, 1, 60)
LC_HOOK_RETRY_BASE_SECONDS = integer("LC_HOOK_RETRY_BASE_SECONDS", 5, 1, 3600)
LC_HOOK_RETRY_MAX_SECONDS = integer("LC_HOOK_RETRY_MAX_SECONDS", 600, 1, 86400)
LC_HOOK_BATCH = integer("LC_HOOK_BATCH", 500, 1, 10_000)
# The limacharlie SDK must never read or write ~/.limacharlie on a server.
os.environ["LC_EPHEMERAL_CREDS"] = "1"

# --- Twilio and sending ------------------------------------------------------------------------
TWILIO_API_BASE_URL = url("TWILIO_API_BASE_URL", "")
TWILIO_TIMEOUT_SECONDS = integer("TWILIO_TIMEOUT_SECONDS", 10, 1, 120)
TWILIO_VALIDITY_PERIOD = integer("TWILIO_VALIDITY_PERIOD", 3600, 1, 36000)
SMS_MAX_BODY_CHARS = integer("SMS_MAX_BODY_CHARS", 1600, 20, 1600)
SMS_MAX_RECIPIENTS = integer("SMS_MAX_RECIPIENTS", 20, 1, 500)
SEND_MAX_ATTEMPTS = integer("SEND_MAX_ATTEMPTS", 6, 1, 50)
SEND_RETRY_BASE_SECONDS = integer("SEND_RETRY_BASE_SECONDS", 2, 1, 600)
SEND_RETRY_MAX_SECONDS = integer("SEND_RETRY_MAX_SECONDS", 60, 1, 3600)
SEND_DEADLINE_SECONDS = integer("SEND_DEADLINE_SECONDS", 900, 10, 36000)

PUBLIC_BASE_URL = url("PUBLIC_BASE_URL", "")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
if PUBLIC_BASE_URL.startswith("http://") and not DEBUG and urlsplit(PUBLIC_BASE_URL).hostname not in _LOOPBACK:
    # Twilio's signature covers the URL, not the channel: over plain HTTP anyone on the path reads the
    # codes, keypresses and replies, and can replay them. Plain HTTP is for a laptop (DEBUG) or for this
    # machine's own loopback address (make demo), which nothing outside it can reach.
    raise ImproperlyConfigured(
        f"PUBLIC_BASE_URL must be an https:// URL (or set DEBUG=true on a development machine), got {PUBLIC_BASE_URL!r}"
    )

# --- acknowledgement you can trust (docs/security.md) ---------------------------------------------
# Wrong codes from one number within an hour before its code replies are refused for the rest of it.
CODE_LOCK_WRONG_CODES = integer("CODE_LOCK_WRONG_CODES", 5, 1, 100)
# Answers other than HELP go only to numbers the organisation alerted within this many days, and at
# most INBOUND_ANSWERS_PER_HOUR to one number: anything else is stored, not answered (SMS pumping).
INBOUND_ANSWER_DAYS = integer("INBOUND_ANSWER_DAYS", 30, 1, 365)
INBOUND_ANSWERS_PER_HOUR = integer("INBOUND_ANSWERS_PER_HOUR", 5, 0, 1000)
# The countries an escalation may call (ISO 3166 letters, comma-separated), "*" for any; empty: only
# the country of the calling number itself. International calls are where toll fraud bills are.
CALL_ALLOWED_COUNTRIES = [
    c.strip().upper() for c in env.str("CALL_ALLOWED_COUNTRIES", default="").split(",") if c.strip()
]
if any(c != "*" and not re.fullmatch(r"[A-Z]{2}", c) for c in CALL_ALLOWED_COUNTRIES):
    raise ImproperlyConfigured(
        f"CALL_ALLOWED_COUNTRIES must be two-letter country codes separated by commas, or *, got {CALL_ALLOWED_COUNTRIES!r}"
    )
# The shortest `ack_within` a rule may give with `escalate: call` (a call is the expensive step).
CALL_MIN_ACK_WITHIN_SECONDS = integer("CALL_MIN_ACK_WITHIN_SECONDS", 60, 0, 3600)

# --- nothing lost, nothing doubled ---------------------------------------------------------------
AMBIGUOUS_POLICY = env.str("AMBIGUOUS_POLICY", default="at-least-once")
if AMBIGUOUS_POLICY not in {"at-least-once", "at-most-once"}:
    raise ImproperlyConfigured(f"AMBIGUOUS_POLICY must be at-least-once or at-most-once, got {AMBIGUOUS_POLICY!r}")
RECONCILE_GRACE_SECONDS = integer("RECONCILE_GRACE_SECONDS", 30, 0, 3600)
SWEEP_INTERVAL_SECONDS = integer("SWEEP_INTERVAL_SECONDS", 30, 1, 3600)
SWEEP_PENDING_SECONDS = integer("SWEEP_PENDING_SECONDS", 120, 1, 86400)
SWEEP_STUCK_SECONDS = integer("SWEEP_STUCK_SECONDS", 180, 5, 86400)
FLOOD_WINDOW_SECONDS = integer("FLOOD_WINDOW_SECONDS", 3600, 1, 86400)
FLOOD_RECIPIENT_LIMIT = integer("FLOOD_RECIPIENT_LIMIT", 20, 0, 1_000_000)
FLOOD_ORG_LIMIT = integer("FLOOD_ORG_LIMIT", 1000, 0, 10_000_000)
FLOOD_DUPLICATE_SECONDS = integer("FLOOD_DUPLICATE_SECONDS", 300, 0, 86400)
TWILIO_MAX_CONCURRENT_PER_ACCOUNT = integer("TWILIO_MAX_CONCURRENT_PER_ACCOUNT", 20, 0, 10_000)
# Calls' own limits (0: none). Per recipient, GoAlert's: carriers block a caller as spam for less.
CALL_RECIPIENT_LIMIT_15_MINUTES = integer("CALL_RECIPIENT_LIMIT_15_MINUTES", 3, 0, 1000)
CALL_RECIPIENT_LIMIT_HOUR = integer("CALL_RECIPIENT_LIMIT_HOUR", 7, 0, 1000)
CALL_ORG_LIMIT_HOUR = integer("CALL_ORG_LIMIT_HOUR", 60, 0, 100_000)

# --- The audit desk (Django admin) -------------------------------------------------------------
ADMIN_URL = env.str("ADMIN_URL", default="admin/").strip()
if not re.fullmatch(r"(?:[A-Za-z0-9._~-]+/)+", ADMIN_URL):
    raise ImproperlyConfigured(f"ADMIN_URL must be a relative path ending in '/', e.g. 'desk/', got {ADMIN_URL!r}")
# Most deliveries one resend may touch: a slip of the "select all" box must not text a thousand people.
ADMIN_RESEND_MAX = integer("ADMIN_RESEND_MAX", 500, 1, 10_000)
# Login lockout (django-axes): after this many failures for one username from one address, that
# pair is locked out for AXES_COOLOFF_MINUTES. Keyed on the pair, so that an attacker guessing
# from elsewhere cannot lock a SOC lead out of the desk during an incident.
AXES_FAILURE_LIMIT = integer("AXES_FAILURE_LIMIT", 5, 1, 100)
AXES_COOLOFF_TIME = timedelta(minutes=integer("AXES_COOLOFF_MINUTES", 15, 1, 10_080))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# The address a lockout is keyed on: behind a proxy every login comes from the proxy, so five wrong
# passwords from anyone would lock a SOC lead out. The client's address is taken from
# X-Forwarded-For only when the request came from one of TRUSTED_PROXIES (config/client_ip.py).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=["127.0.0.1", "::1"])
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy.strip(), strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXIES must be IP addresses or networks, comma-separated, got {_proxy!r}"
        ) from None
AXES_CLIENT_IP_CALLABLE = "config.client_ip.client_ip"
# An admin login lasts a working shift, not Django's default two weeks.
SESSION_COOKIE_AGE = 8 * 3600
# Over HTTPS the session and CSRF cookies must never travel in clear text, plain HTTP is redirected
# and browsers are told (HSTS) to use HTTPS only. gunicorn sets the scheme from X-Forwarded-Proto
# sent by FORWARDED_ALLOW_IPS (the TLS proxy). The probes are exempt: a load balancer or
# orchestrator probes over plain HTTP from inside.
_HTTPS = PUBLIC_BASE_URL.startswith("https://")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _HTTPS
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = _HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = 31_536_000 if _HTTPS else 0
# includeSubDomains covers names under PUBLIC_BASE_URL's host only (e.g. *.sms.example.com), which
# this service owns. Preload is a submission to the browsers' lists: the domain owner's decision.
SECURE_HSTS_INCLUDE_SUBDOMAINS = _HTTPS
SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- Django ------------------------------------------------------------------------------------
_default_hosts = ["localhost", "127.0.0.1", "[::1]"]
if PUBLIC_BASE_URL:
    _default_hosts.append(urlsplit(PUBLIC_BASE_URL).hostname or "")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=_default_hosts)
CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL] if PUBLIC_BASE_URL.startswith("https://") else []

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here rather than from a CDN
    "axes",
    "deliveries",
    "extension",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First, so that a locked-out username/address pair is refused before its password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets the web process read while the worker writes; IMMEDIATE takes the write lock
            # at BEGIN so two writers queue (up to `timeout`) instead of failing with "database is locked".
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # A file (not :memory:) so that a Celery worker started by the tests shares the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
elif DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    # Fail a connection attempt in seconds, not after the OS gives up: /readyz and the intake must
    # answer while the database is unreachable. An explicit value in DATABASE_URL wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
DATABASES["default"]["CONN_MAX_AGE"] = integer("DB_CONN_MAX_AGE", 60, 0, 86_400)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
FORMAT_MODULE_PATH = ["config.formats"]  # ISO date-times to the second in the admin

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request while it is missing

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- OpenAPI (drf-spectacular), served at /api/schema/ and browsable at /api/docs/ -------------------
SPECTACULAR_SETTINGS = {
    "TITLE": "ext-twilio",
    "DESCRIPTION": (
        "A LimaCharlie extension that sends SMS through Twilio. LimaCharlie calls `POST /extension/` with a "
        "gzipped JSON envelope signed in the `lc-ext-sig` header; operators probe `/healthz` and `/readyz` "
        "and scrape `/metrics` (Prometheus text, not described here)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Operations --------------------------------------------------------------------------------
# When set, /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it is open (for a
# private network).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="").strip()
# prometheus-client writes its count files there as soon as a metric is made: a folder that does not
# exist yet would stop every command (`migrate` before `bin/run` creates it, for one).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# --- Celery ------------------------------------------------------------------------------------


def _embedded_broker_dir(configured: str, var_dir: Path) -> Path:
    """Where the embedded broker keeps its messages: in memory (/dev/shm, one folder per VAR_DIR) where
    the machine has it, else in VAR_DIR (docs/decisions/ says why). Nothing is lost with them at a
    reboot: the database is the record, and the sweeper enqueues again every delivery that is due."""
    if configured:
        return Path(configured)
    memory = Path("/dev/shm")
    if memory.is_dir() and os.access(memory, os.W_OK):
        return memory / f"ext-twilio-{hashlib.sha256(str(var_dir.resolve()).encode()).hexdigest()[:16]}"
    return var_dir / "broker"


CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = _embedded_broker_dir(env.str("EMBEDDED_BROKER_DIR", default=""), VAR_DIR)
    _broker_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (VAR_DIR / "broker-processed").mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "broker-processed"),
        # Where the transport keeps its fan-out exchange table; by default a `control/` folder in the
        # working directory, which would litter the checkout.
        "control_folder": str(VAR_DIR / "broker-control"),
        "store_processed": False,
        # How long an idle worker waits before it looks at the folder again (kombu's default: 1 s, the
        # latency an alert would add). 50 ms costs an idle worker a directory listing 20 times a second.
        "polling_interval": 0.05,
    }
    # kombu's filesystem transport, with its worker's acknowledgements run at once (config/broker.py).
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
    # The filesystem transport has no fan-out exchange for remote control commands.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
# Celery's Django fixup closes the database connection before and after every task unless this is
# set, so each task opened a new one (on PostgreSQL a TCP connect and authentication; DB_CONN_MAX_AGE
# held only for the web). With it, config.celery closes a connection as Django does around a web
# request: when it failed or outlived DB_CONN_MAX_AGE. (The fixup still closes one thread's connection
# every 2 × this many tasks.)
CELERY_DB_REUSE_MAX = 10_000
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# A task is acknowledged after it ran, so a worker that dies mid-task leaves it to be redelivered;
# the claim on the delivery row (pending -> sending) keeps a redelivered task from sending twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Limits above the HTTP timeout: a task is never killed while its POST to Twilio may still succeed.
CELERY_TASK_SOFT_TIME_LIMIT = TWILIO_TIMEOUT_SECONDS + 20
CELERY_TASK_TIME_LIMIT = TWILIO_TIMEOUT_SECONDS + 40
if SWEEP_STUCK_SECONDS <= CELERY_TASK_TIME_LIMIT:
    # Otherwise the sweeper could take a live worker's claim for a dead one and reconcile before
    # that worker's POST reached Twilio, then send a second text.
    raise ImproperlyConfigured(
        f"SWEEP_STUCK_SECONDS must be more than TWILIO_TIMEOUT_SECONDS + 40 ({CELERY_TASK_TIME_LIMIT}), "
        f"got {SWEEP_STUCK_SECONDS}"
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Enqueueing happens inside a web request: fail fast when the broker is down rather than hang
# LimaCharlie's call (the delivery row is already committed and stays `pending`).
CELERY_BROKER_CONNECTION_TIMEOUT = 3
# Redis puts back a task a worker has held this long. Escalation timers never wait longer than half of
# it in the broker (services/escalate.py), so a timer is never delivered twice.
BROKER_VISIBILITY_TIMEOUT_SECONDS = integer("BROKER_VISIBILITY_TIMEOUT_SECONDS", 600, 2, 86400)
CELERY_BEAT_SCHEDULE = {"sweep": {"task": "deliveries.sweep", "schedule": float(SWEEP_INTERVAL_SECONDS)}}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # An unacknowledged task (its worker was killed) is redelivered after this long. It must exceed
    # the longest retry countdown, or a scheduled retry would be delivered twice (harmless: the
    # claim stops the second, but wasteful). The sweeper covers the gap much sooner.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": BROKER_VISIBILITY_TIMEOUT_SECONDS,
        "socket_connect_timeout": 3,
        "socket_timeout": 5,
    }
# The worker logs through Django's LOGGING (JSON, with the delivery's ids) rather than Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}

# --- Logging -----------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {LOG_LEVEL!r}")
# json (default): one JSON object a line, for a log pipeline; plain: human-readable, for a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="json").strip().lower()
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, got {LOG_FORMAT!r}")
LOGGING = logs.config(level=LOG_LEVEL, format_name=LOG_FORMAT)
