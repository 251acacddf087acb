"""Settings for the test run: the real settings, with keys generated for each run.

Nothing secret is committed: keys are made here and put in the process environment, so that a
Celery worker started by the tests (which inherits the environment) uses the same ones.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet

if not os.environ.get("EXT_TWILIO_TEST_RUN"):
    os.environ["EXT_TWILIO_TEST_RUN"] = "1"
    # Its own folder for the embedded database and broker, apart from a `make run` instance.
    os.environ["VAR_DIR"] = str(Path(__file__).resolve().parent.parent / "var" / "test")
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(40)
    os.environ["FIELD_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    os.environ["LC_SHARED_SECRET"] = secrets.token_urlsafe(24)
    # Short timeouts and backoff keep fault tests quick; the policy under test is the same.
    os.environ["TWILIO_TIMEOUT_SECONDS"] = "2"
    os.environ["SEND_RETRY_BASE_SECONDS"] = "1"
    os.environ["SEND_RETRY_MAX_SECONDS"] = "2"
    os.environ["RECONCILE_GRACE_SECONDS"] = "1"
    os.environ["LC_HOOK_RETRY_BASE_SECONDS"] = "1"
    os.environ["LC_HOOK_RETRY_MAX_SECONDS"] = "2"
    # Each test reads the secret it set up; tests/extension/test_credential_cache.py turns the cache on.
    os.environ["CREDENTIAL_CACHE_SECONDS"] = "0"
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):  # they would send the SDK past the fake
        os.environ.pop(name, None)

from config.settings import *

# The desk's tests create many logins; a fast hasher keeps them quick (never used outside tests).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
