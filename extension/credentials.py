"""The only module that talks to LimaCharlie's API: it reads the org's Twilio credential from Hive.

The JWT it is given is valid only around the call: it is used once and never stored or logged.
Error messages name the secret, never its value.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

DEFAULT_SECRET_NAME = "twilio"
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
HIVE_PREFIX = "hive://secret/"


@dataclass(frozen=True)
class TwilioCredential:
    account_sid: str
    auth_token: str

    def __repr__(self) -> str:  # never let the token reach a log line or a traceback
        return f"TwilioCredential(account_sid={self.account_sid!r}, auth_token=<hidden>)"


class CredentialError(Exception):
    def __init__(self, message: str, retriable: bool = False) -> None:
        super().__init__(message)
        self.message, self.retriable = message, retriable


def parse_credential(value: str, where: str) -> TwilioCredential:
    """Split `SID/TOKEN` on the first `/` and check its shape."""
    sid, sep, token = value.strip().partition("/")
    if not sep:
        raise CredentialError(f"{where} is not of the form ACCOUNT_SID/AUTH_TOKEN (no '/' found)")
    if not ACCOUNT_SID.match(sid):
        raise CredentialError(
            f"{where}: the part before '/' is not a Twilio Account SID (AC followed by 32 hex digits)"
        )
    if not token or any(ch.isspace() for ch in token):
        raise CredentialError(f"{where}: the Auth Token after '/' is empty or contains white space")
    return TwilioCredential(sid, token)


def looks_resolved(reference: str) -> bool:
    """The platform may resolve a `secret` parameter to its plaintext before calling us."""
    return bool(ACCOUNT_SID.match(reference.strip().partition("/")[0])) and "/" in reference


def secret_name(reference: str) -> str:
    """`hive://secret/NAME` or a bare NAME → NAME."""
    ref = reference.strip()
    if ref.startswith("hive://"):
        name = ref.rstrip("/").rsplit("/", 1)[-1]
        if not ref.startswith(HIVE_PREFIX) or not name:
            raise CredentialError(f"secret reference {ref!r} must look like {HIVE_PREFIX}NAME")
        return name
    if not ref or "/" in ref or len(ref) > 256:
        raise CredentialError("secret reference must be a secret name or hive://secret/NAME")
    return ref


def choose_reference(request_secret: str | None, config_secret: str | None) -> str:
    """Which secret: the request's `secret` parameter, then the extension config, then `twilio`."""
    for candidate in (request_secret, config_secret):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return DEFAULT_SECRET_NAME


def fetch_twilio_credential(*, oid: str, jwt: str, reference: str) -> TwilioCredential:
    """Resolve a reference to a Twilio credential, reading Hive with the call's JWT if needed."""
    if looks_resolved(reference):
        return parse_credential(reference, "the secret parameter")
    name = secret_name(reference)
    if not jwt:
        raise CredentialError(f"cannot read secret {name!r}: the call carried no org JWT")
    value = _read_hive_secret(oid=oid, jwt=jwt, name=name)
    return parse_credential(value, f"secret {name!r}")


@lru_cache(maxsize=1)
def _sdk() -> Any:
    """Import the SDK once, and stop it rebuilding an SSL context for every Client.

    limacharlie 5.x creates a fresh `ssl.create_default_context()` in each `Client()`, re-reading the
    system CA bundle: about 80 ms, i.e. most of the time of a `run` call we serve (measured with
    cProfile). A configured SSLContext is safe to share between threads, so one is built and reused.
    """
    import limacharlie.client

    context = limacharlie.client._create_ssl_context()
    limacharlie.client._create_ssl_context = lambda: context
    return limacharlie.client


def _read_hive_secret(*, oid: str, jwt: str, name: str) -> str:
    from limacharlie import errors
    from limacharlie.client import Client
    from limacharlie.sdk.hive import Hive
    from limacharlie.sdk.organization import Organization

    # The SDK reads LC_API_URL once, at import; keep it in step with our setting.
    _sdk().ROOT_URL = settings.LC_API_URL
    try:
        client = Client(oid=oid, jwt=jwt, timeout=settings.LC_API_TIMEOUT_SECONDS)
        record = Hive(Organization(client), "secret").get(name)
    except errors.RateLimitError:
        raise CredentialError(f"LimaCharlie rate-limited the read of secret {name!r}", retriable=True) from None
    except (errors.AuthenticationError, errors.PermissionDeniedError):
        raise CredentialError(
            f"LimaCharlie refused to read secret {name!r} with this call's token "
            "(expired, or the extension lacks the secret.get permission)"
        ) from None
    except errors.NotFoundError:
        raise CredentialError(f"secret {name!r} does not exist in the organisation's Secrets Manager") from None
    except errors.ApiError as exc:
        status = exc.status_code or 0
        code = _lc_error_code(exc)
        if code == "RECORD_NOT_FOUND":
            raise CredentialError(f"secret {name!r} does not exist in the organisation's Secrets Manager") from None
        if status in (401, 403):
            raise CredentialError(f"LimaCharlie refused to read secret {name!r} with this call's token") from None
        if status == 429 or status >= 500 or status == 0:
            raise CredentialError(
                f"LimaCharlie API failed reading secret {name!r} (HTTP {status})", retriable=True
            ) from None
        raise CredentialError(
            f"LimaCharlie API refused reading secret {name!r} (HTTP {status}, {code or 'no code'})"
        ) from None
    except errors.LimaCharlieError as exc:
        logger.warning("LimaCharlie SDK error reading secret %r for org %s: %s", name, oid, type(exc).__name__)
        raise CredentialError(f"LimaCharlie API failed reading secret {name!r}", retriable=True) from None
    except Exception as exc:  # noqa: BLE001 - connection errors and the like are transient
        logger.warning("could not reach LimaCharlie reading secret %r for org %s: %s", name, oid, type(exc).__name__)
        raise CredentialError(f"LimaCharlie API unreachable reading secret {name!r}", retriable=True) from None
    data = record.data if isinstance(record.data, dict) else {}
    value = data.get("secret")
    if not isinstance(value, str) or not value.strip():
        raise CredentialError(f"secret {name!r} has no 'secret' value")
    return value


def _lc_error_code(exc: Exception) -> str | None:
    code = getattr(exc, "error_code", None)
    if isinstance(code, str):
        return code
    return "RECORD_NOT_FOUND" if "RECORD_NOT_FOUND" in str(exc) else None
