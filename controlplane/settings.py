"""The one settings module. Every value comes from the environment (or `.env`); see README's
configuration table. `BULWARK_ENV=production` turns on every transport protection and refuses
to start with a missing, short or placeholder secret."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from redis.backoff import NoBackoff
from redis.retry import Retry

from apps.core.env import (
    StartupError,
    database_from_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_rate,
    env_str,
    load_dotenv,
)
from apps.core.secrets import load_startup_secrets
from apps.registry.artifacts.trusted import global_name_problem

BASE_DIR = Path(__file__).resolve().parent.parent
DOTENV_PATH = Path(os.environ.get("BULWARK_DOTENV", BASE_DIR / ".env"))
load_dotenv(DOTENV_PATH)

BULWARK_ENV = env_choice(
    "BULWARK_ENV", choices=("development", "production"), default="development"
)
PRODUCTION = BULWARK_ENV == "production"

_secrets = load_startup_secrets(production=PRODUCTION, dotenv=DOTENV_PATH)
SECRET_KEY = _secrets["DJANGO_SECRET_KEY"]
SECRETS_BACKEND = env_choice("SECRETS_BACKEND", choices=("env", "azure-keyvault"), default="env")

# Unsafe options stay off unless asked, and production cannot ask.
DEBUG = False if PRODUCTION else env_bool("DJANGO_DEBUG")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise StartupError("ALLOWED_HOSTS must name this deployment's host names in production.")
if PRODUCTION and "*" in ALLOWED_HOSTS:
    raise StartupError("ALLOWED_HOSTS may not be '*' in production: name the hosts.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# Whose X-Forwarded-For / X-Forwarded-Proto we believe: nobody's unless listed.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
# /metrics (docs/metrics.md): on by default, served to these networks (the client address after
# TRUSTED_PROXIES) or to `Authorization: Bearer <METRICS_TOKEN>` (a secret); 404 to anyone else.
METRICS_ENABLED = env_bool("METRICS_ENABLED", default=True)
METRICS_ALLOWED_NETWORKS = env_networks(
    "METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"]
)
PREDICT_USER_RATE_LIMIT = env_rate("PREDICT_USER_RATE_LIMIT", default="60/m")
# Decrypted, verified models kept per web process (LRU, bounded by count and by plaintext bytes).
SERVING_MODEL_CACHE_SIZE = env_int("SERVING_MODEL_CACHE_SIZE", default=8, minimum=1)
SERVING_MODEL_CACHE_BYTES = env_int("SERVING_MODEL_CACHE_MB", default=1024, minimum=1) * 1024 * 1024
# The longest a process keeps resolved versions and grants should a change's signal be lost.
SERVING_STATE_TTL = env_int("SERVING_STATE_TTL", default=60, minimum=1)
# Each caller's (API key's or JWT user's) epsilon per UTC day on models with differential privacy.
PRIVACY_DAILY_EPSILON = env_float("PRIVACY_DAILY_EPSILON", default=10.0, minimum_exclusive=0)

INSTALLED_APPS = [
    "apps.accounts.admin_config.BulwarkAdminConfig",  # django.contrib.admin with TOTP
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.core",
    # django-otp's core only: the devices are apps.accounts' own (TotpDevice, RecoveryCodeDevice),
    # whose secrets are sealed or hashed; its plugins stored them in plain text.
    "django_otp",
    "apps.accounts",
    # After apps.accounts, whose `changepassword` (which also ends the user's credentials)
    # must win over Django's: the first app to name a command wins.
    "django.contrib.auth",
    "apps.audit",
    "apps.apikeys",
    "apps.registry",
    "apps.serving",
    "apps.incidents",
    "apps.compliance",
    "apps.gdpr",
    "apps.console",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestContextMiddleware",
    "apps.core.middleware.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.SecurityHeadersMiddleware",
    # Probes answer here: after the security headers, before host validation (CommonMiddleware).
    "apps.core.middleware.ProbeMiddleware",
    # NUL and invalid UTF-8 in URLs and forms, chunked bodies: for pages and API alike.
    "apps.core.middleware.InputHardeningMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.ApiRequestGuardMiddleware",
    # Predict is answered here: what follows serves pages and the session API only.
    "apps.serving.middleware.PredictShortcutMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so that its process_exception sees a page view's refusal first.
    "apps.core.middleware.PageErrorMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
                "apps.console.navigation.navigation",
            ],
        },
    },
]

# --- Data -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
DATABASES = {"default": database_from_url(DATABASE_URL, base_dir=BASE_DIR)}
# The role that owns the tables (PostgreSQL): only `migrate` connects as it, and then grants
# DATABASE_URL's role rows only (apps/core/database_roles.py). Unset: one role does both, and
# `check --deploy` warns that the application owns its tables.
DATABASE_OWNER_URL = env_str("DATABASE_OWNER_URL")
DATABASE_OWNER = (
    database_from_url(DATABASE_OWNER_URL, base_dir=BASE_DIR) if DATABASE_OWNER_URL else None
)
if DATABASE_OWNER is not None and (
    DATABASE_OWNER["ENGINE"] != DATABASES["default"]["ENGINE"]
    or DATABASE_OWNER["NAME"] != DATABASES["default"]["NAME"]
    or "postgresql" not in str(DATABASE_OWNER["ENGINE"])
):
    raise StartupError(
        "DATABASE_OWNER_URL must name the same PostgreSQL database as DATABASE_URL, "
        "with the role that owns its tables."
    )

REDIS_URL = env_str("REDIS_URL")
# Short socket timeouts and one immediate retry: a Redis that is down must turn into a quick
# 503, not a hung worker (redis-py's default retries with backoff take about 4 s to give up).
_REDIS_TIMEOUTS = {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}
_REDIS_OPTIONS = {**_REDIS_TIMEOUTS, "retry": Retry(NoBackoff(), 1)}
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "bulwark",
            "OPTIONS": _REDIS_OPTIONS,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery (settings namespace CELERY_) -------------------------------------------------
# With REDIS_URL: Redis is broker and result backend. Without: tasks run eagerly, in-process.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_BROKER_TRANSPORT_OPTIONS = dict(_REDIS_TIMEOUTS)
CELERY_REDIS_SOCKET_TIMEOUT = 5.0
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2.0
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = 3
# JSON only: a pickled task message would be code from whoever can write to Redis.
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task is acknowledged after it ran, so a worker killed mid-task does not lose it.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TIMEZONE = "UTC"
# Each part adds its periodic jobs here.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "audit-chain": {"task": "audit.chain_pending", "schedule": 5.0},
    "audit-checkpoint": {"task": "audit.checkpoint", "schedule": 300.0},
    "audit-verify-new": {"task": "audit.verify_new", "schedule": 300.0},
    "audit-verify-all": {"task": "audit.verify_all", "schedule": 24 * 3600.0},
    "apikeys-expire": {"task": "apikeys.expire", "schedule": 60.0},
    "apikeys-warn-expiring": {"task": "apikeys.warn_expiring", "schedule": 24 * 3600.0},
    "registry-verify-watermarks": {"task": "registry.verify_watermarks", "schedule": 24 * 3600.0},
    "incidents-detect-audit": {"task": "incidents.detect_audit", "schedule": 60.0},
    "incidents-expiring-keys": {"task": "incidents.detect_expiring_keys", "schedule": 3600.0},
    "compliance-checks": {"task": "compliance.run_checks", "schedule": 3600.0},
}

# --- Audit ------------------------------------------------------------------------------
# Events are durable the moment they are recorded (a pending row in the caller's
# transaction). Who chains them: with a broker, the audit-chain beat job (every 5 s) and
# every reader, so a request pays only for its pending row; in the embedded default (no
# beat) each commit chains right away (try-lock, one batch at most).
AUDIT_CHAIN_INLINE = CELERY_TASK_ALWAYS_EAGER
# Group commit of predict's events through the host's audit writer (apps.audit.writer): its
# socket, set by gunicorn's master when AUDIT_WRITER=process (controlplane/gunicorn.conf.py)
# or by hand for a writer run with `manage.py audit_writer`. Empty: each worker inserts.
AUDIT_WRITER_SOCKET = env_str("AUDIT_WRITER_SOCKET")
AUDIT_WRITER_TIMEOUT = env_float("AUDIT_WRITER_TIMEOUT", default=5.0, minimum_exclusive=0)
AUDIT_CHAIN_BREAK_HANDLERS: list[str] = ["apps.incidents.hooks.audit_chain_broken"]

# --- Watermarks -------------------------------------------------------------------------
# Dotted paths of callables `handler(*, result)` called when a watermark verification fails
# (the incidents app adds its own).
WATERMARK_FAILURE_HANDLERS: list[str] = ["apps.incidents.hooks.watermark_failed"]
# The only hosts a suspect-endpoint check may contact (exact host names, lower case); empty:
# none. Any other URL is refused before a connection is opened.
WATERMARK_SUSPECT_HOSTS = [host.lower() for host in env_list("WATERMARK_SUSPECT_HOSTS")]
WATERMARK_SUSPECT_CONNECT_TIMEOUT = 3.0
WATERMARK_SUSPECT_READ_TIMEOUT = 10.0

# --- Incident detectors (apps/incidents/detectors.py) -------------------------------------
# An incident opens when one subject's refusals in the audit trail reach a threshold within a
# window: failed authentication per client network, failed sign-ins per account (within
# LOGIN_FAILURE_WINDOW: at most LOGIN_FAILURES_PER_USERNAME are ever recorded before the
# lock-out, so the default is the lock-out itself), rate-limited predicts and replayed
# signatures per API key. Keys expiring within INCIDENT_KEY_EXPIRY_DAYS open a SEV4 each.
INCIDENT_DETECTOR_WINDOW = env_int("INCIDENT_DETECTOR_WINDOW", default=300, minimum=1)
INCIDENT_AUTH_FAILURE_BURST = env_int("INCIDENT_AUTH_FAILURE_BURST", default=20, minimum=1)
INCIDENT_USERNAME_FAILURE_BURST = env_int("INCIDENT_USERNAME_FAILURE_BURST", default=5, minimum=1)
INCIDENT_RATE_LIMIT_FLOOD = env_int("INCIDENT_RATE_LIMIT_FLOOD", default=100, minimum=1)
INCIDENT_SIGNATURE_REPLAY_BURST = env_int("INCIDENT_SIGNATURE_REPLAY_BURST", default=3, minimum=1)
INCIDENT_KEY_EXPIRY_DAYS = env_int("INCIDENT_KEY_EXPIRY_DAYS", default=7, minimum=1)

# --- HTTP -------------------------------------------------------------------------------
BULWARK_MAX_JSON_BODY = 1024 * 1024  # docs/api.md: a JSON body is at most 1 MiB
DATA_UPLOAD_MAX_MEMORY_SIZE = BULWARK_MAX_JSON_BODY
# Model artifacts (multipart uploads to /api/v1/models/<name>/versions) are kept whole in memory
# while they are hashed and encrypted, never on disk: this bounds that memory (413 beyond).
BULWARK_MAX_ARTIFACT_BYTES = env_int("MAX_ARTIFACT_MB", default=512, minimum=1) * 1024 * 1024
# Types a `format=skops` artifact may hold beyond skops's own defaults; uploads naming any other
# type are refused (apps/registry/formats.py explains the default: keep the two in step).
BULWARK_SKOPS_TRUSTED_TYPES = env_list(
    "SKOPS_TRUSTED_TYPES", default=["sklearn.tree._tree.Tree", "numpy.dtype"]
)
# Globals a pickle (joblib) artifact may import beyond the default list of
# apps/registry/artifacts/trusted.py (`module.name`, comma-separated). A name that reaches the
# OS, the interpreter or the import system is refused at startup (NEVER_TRUSTED there).
PICKLE_TRUSTED_GLOBALS_EXTRA = env_list("PICKLE_TRUSTED_GLOBALS_EXTRA")
for _name in PICKLE_TRUSTED_GLOBALS_EXTRA:
    if _problem := global_name_problem(_name):
        raise StartupError(f"PICKLE_TRUSTED_GLOBALS_EXTRA: {_problem}.")

# --- Model runners (apps/registry/isolation) -------------------------------------------------
# `process`: models are unpickled, verified and predicted in runner processes that hold no
# secret (production's only choice); `inprocess`: in the web or worker process itself (the
# embedded default, which says so when it loads a model).
MODEL_ISOLATION = env_choice(
    "MODEL_ISOLATION",
    choices=("process", "inprocess"),
    default="process" if PRODUCTION else "inprocess",
)
if PRODUCTION and MODEL_ISOLATION != "process":
    raise StartupError(
        "MODEL_ISOLATION must be 'process' in production: a model artifact is untrusted code "
        "and must not run in a process that holds Bulwark's secrets."
    )
# `required`: a runner that cannot lock itself in with Landlock and seccomp does not start
# (predict answers 503); `basic`: environment, resource limits and capabilities only.
MODEL_RUNNER_SANDBOX = env_choice(
    "MODEL_RUNNER_SANDBOX", choices=("required", "basic"), default="required"
)
# Started as root, runners switch to this user if it is set (empty: keep the user, drop every
# capability). The Python installation must be readable by it.
MODEL_RUNNER_USER = env_str("MODEL_RUNNER_USER")
MODEL_RUNNER_MEMORY_MB = env_int("MODEL_RUNNER_MEMORY_MB", default=2048, minimum=64)
MODEL_RUNNER_CPU_SECONDS = env_int("MODEL_RUNNER_CPU_SECONDS", default=3600, minimum=10)
MODEL_RUNNER_TIMEOUT = env_float("MODEL_RUNNER_TIMEOUT", default=10.0, minimum_exclusive=0)
MODEL_RUNNER_LOAD_TIMEOUT = env_float(
    "MODEL_RUNNER_LOAD_TIMEOUT", default=120.0, minimum_exclusive=0
)
# Package directories runners may import from besides the Python installation.
MODEL_RUNNER_PACKAGES = [BASE_DIR / "apps"]
# Compliance evidence files (multipart to /api/v1/compliance/items/<id>/evidence and the UI):
# kept in memory while they are checked and encrypted, never on disk (413 beyond).
COMPLIANCE_EVIDENCE_MAX_BYTES = (
    env_int("COMPLIANCE_EVIDENCE_MAX_MB", default=10, minimum=1) * 1024 * 1024
)
# The compliance check "watermark verified" wants a succeeded verification of every
# production version at most this many days old.
COMPLIANCE_WATERMARK_MAX_AGE_DAYS = env_int(
    "COMPLIANCE_WATERMARK_MAX_AGE_DAYS", default=7, minimum=1
)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
# docs/api.md: no trailing slashes, and never a redirect that drops a POST body.
APPEND_SLASH = False
DEPENDENCY_RETRY_AFTER = 5

REST_FRAMEWORK = {
    # Bearer JWTs for API clients; sessions (CSRF enforced) for the server-rendered UI.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.JwtAuthentication",
        "apps.core.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.StrictJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.exception_handler.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "STRICT_JSON": True,
    # `?format=` belongs to our endpoints (exports, reports), not to renderer negotiation.
    "URL_FORMAT_OVERRIDE": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Bulwark API",
    "VERSION": "1",
    "DESCRIPTION": (
        "The security control plane for ML model serving. Conventions where the contract "
        "(docs/api.md) is silent follow Django REST Framework: paths have no trailing slash and a "
        "trailing slash answers 404 (never a redirect); every list is cursor-paginated as "
        '`{"results": [...], "next": cursor|null}` with `?cursor=` and `?limit=` (default 50, '
        "at most 500); an invalid cursor is 400 `invalid_input`; every error is "
        '`{"error": {"code", "message", "details", "request_id"}}`; an unexpected failure is '
        "500 `internal_error` with no internals; 406 `not_acceptable` when `Accept` excludes "
        "JSON. Every response carries `X-Request-ID`."
    ),
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "apps.registry.models.WatermarkStatus",
        "StatusEnum": ["ok", "unavailable"],
        "ComplianceItemStatusEnum": "apps.compliance.models.ItemStatus",
        "IncidentStatusEnum": "apps.incidents.models.Status",
        "ModelVersionStatusEnum": "apps.registry.models.VersionStatus",
    },
}

# --- Identity: JWT, MFA, login throttling, API keys ---------------------------------------
SIMPLE_JWT: dict[str, Any] = {
    "ALGORITHM": "HS256",  # pinned: a token naming any other algorithm (none included) is refused
    "SIGNING_KEY": _secrets["JWT_SIGNING_KEY"],
    "VERIFYING_KEY": None,
    "ISSUER": env_str("JWT_ISSUER", default="bulwark"),
    "AUDIENCE": env_str("JWT_AUDIENCE", default="bulwark-api"),
    "ACCESS_TOKEN_LIFETIME": timedelta(
        minutes=env_int("JWT_ACCESS_MINUTES", default=15, minimum=1)
    ),
    "REFRESH_TOKEN_LIFETIME": timedelta(
        minutes=env_int("JWT_REFRESH_MINUTES", default=1440, minimum=5)
    ),
    "LEEWAY": 0,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "JTI_CLAIM": "jti",
    "TOKEN_TYPE_CLAIM": "typ",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": False,
}
# A token family (one sign-in and its rotations) ends this long after the sign-in however
# often it is refreshed, and after this long without a refresh: then the user signs in again.
JWT_FAMILY_MAX_AGE = timedelta(hours=env_int("JWT_FAMILY_MAX_AGE_HOURS", default=168, minimum=1))
JWT_FAMILY_IDLE_TIMEOUT = timedelta(
    minutes=env_int("JWT_FAMILY_IDLE_MINUTES", default=1440, minimum=5)
)
# Roles whose members (and every superuser) must have a verified TOTP device to use the admin.
MFA_REQUIRED_ROLES = env_list("MFA_REQUIRED_ROLES", default=["admin", "security_officer"])
OTP_TOTP_ISSUER = "Bulwark"
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# The UI's sign-in (username, password, TOTP); the admin keeps its own at /admin/login/.
LOGIN_URL = "/account/login"
# Login throttling (docs/api.md): per username, then per client IP, in a fixed window.
LOGIN_FAILURES_PER_USERNAME = 5
LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", default=30, minimum=1)
LOGIN_FAILURE_WINDOW = 15 * 60
# Failed authentication on the API, per client IP and minute (docs/api.md: default 30/m).
AUTH_FAILURES_PER_IP_RATE = env_rate("AUTH_FAILURES_PER_IP_RATE", default="30/m")
API_KEY_DEFAULT_EXPIRES_DAYS = 90
API_KEY_DEFAULT_RATE_LIMIT = "60/m"
API_KEY_DEFAULT_GRACE_SECONDS = 86400
API_KEY_EXPIRY_WARNING_DAYS = 7
SIGNATURE_TOLERANCE_SECONDS = 300

# --- Passwords and sessions -------------------------------------------------------------
# Argon2id first (OWASP's recommendation); PBKDF2 kept so older hashes still verify and upgrade.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 15},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", default=8 * 3600, minimum=300)
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Orchestrators probe over plain HTTP (docs/api.md): where HTTPS is enforced, the probes still
# answer.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

if PRODUCTION:
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", default=31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"

# --- Static files -----------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "var" / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or BASE_DIR / "var" / "media")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging: JSON lines on stdout, secrets masked by a filter on the handler ----------------
LOG_LEVEL = env_choice(
    "LOG_LEVEL", choices=("debug", "info", "warning", "error"), default="info"
).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_secrets": {"()": "apps.core.logging.MaskSecretsFilter"}},
    "formatters": {"json": {"()": "apps.core.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["mask_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "celery": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
