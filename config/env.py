"""How the settings read the environment: strictly. A malformed value stops start-up with
ImproperlyConfigured naming the variable. Secrets may also be given as a path in `<NAME>_FILE`
(django-environ's FileAwareEnv), e.g. `LC_SHARED_SECRET_FILE=/run/secrets/lc`."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.FileAwareEnv()


MIN_SECRET_CHARS = 32


def mandatory(name: str) -> str:
    value = env.str(name, default="").strip()
    if not value:
        raise ImproperlyConfigured(f"{name} is not set: run `make .env` to generate one, or export it.")
    return value


def secret(name: str, *, required: bool) -> str:
    """A key: white space around it is dropped (a `_FILE` usually ends in a newline, which would
    otherwise be part of the key), and a short one is refused rather than used."""
    value = mandatory(name) if required else env.str(name, default="").strip()
    if value and len(value) < MIN_SECRET_CHARS:
        raise ImproperlyConfigured(
            f"{name} is shorter than {MIN_SECRET_CHARS} characters: generate a long random one "
            "(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    return value


def integer(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "" and not os.environ.get(f"{name}_FILE"):
        return default
    try:
        value = int(env.str(name).strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def url(name: str, default: str) -> str:
    value = env.str(name, default=default).strip().rstrip("/")
    if value and urlsplit(value).scheme not in {"http", "https"}:
        raise ImproperlyConfigured(f"{name} must be an absolute http:// or https:// URL, got {value!r}")
    return value
