"""The only module that talks to LimaCharlie's API: it reads the org's Twilio credential from Hive, and
makes and removes the extension's webhook adapter (an installation key and a `cloud_sensor` record).

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

from deliveries.lchook import ADAPTER_NAME

logger = logging.getLogger(__name__)

DEFAULT_SECRET_NAME = "twilio"
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
HIVE_PREFIX = "hive://secret/"
# A Hive record name as this service accepts it: ASCII letters, digits, '.', '_', '-', not starting
# with '.' (so never '.' or '..', which would walk the API's path), and short: a longer value is more
# likely a pasted credential than a name.
SECRET_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}", re.ASCII)
SECRET_NAME_RULE = "ASCII letters, digits, '.', '_' or '-', not starting with '.', at most 64"


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


def secret_name(reference: str, field: str = "the secret reference") -> str:
    """`hive://secret/NAME` or a bare NAME → NAME, where NAME is a plain short name.

    Anything else is refused without being shown: a value that is not a plain name may be a pasted
    credential (`AC…:token`), and it would otherwise reach the API as a path, the logs and the reply.
    """
    ref = reference.strip()
    name = ref[len(HIVE_PREFIX) :].rstrip("/") if ref.startswith(HIVE_PREFIX) else ref
    if not SECRET_NAME.fullmatch(name):
        raise CredentialError(
            f"{field} must be a secret name ({SECRET_NAME_RULE}), hive://secret/NAME, or ACCOUNT_SID/AUTH_TOKEN; "
            "the value given is none of these and is not shown"
        )
    return name


def choose_reference(request_secret: str | None, config_secret: str | None) -> str:
    """Which secret: the request's `secret` parameter, then the extension config, then `twilio`."""
    for candidate in (request_secret, config_secret):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return DEFAULT_SECRET_NAME


def fetch_twilio_credential(
    *, oid: str, jwt: str, reference: str, field: str = "the secret reference"
) -> TwilioCredential:
    """Resolve a reference to a Twilio credential, reading Hive with the call's JWT if needed.
    `field` names where the reference came from, for the error."""
    if looks_resolved(reference):
        return parse_credential(reference, field)
    name = secret_name(reference, field)
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


def warm_up() -> None:
    """Import the SDK and build its SSL context now (at a web worker's start), not in the first call
    that reads a secret: that call would wait for them, and pay their CPU, about 0.1 s. A failure here
    changes nothing: the first call that reads a secret tries again (the result is cached only once
    built) and answers as before."""
    try:
        _sdk()
    except Exception as exc:  # noqa: BLE001 - logged; the first call tries again
        logger.warning(
            "could not prepare the LimaCharlie SDK at start (%s); the first call tries again", type(exc).__name__
        )


def _read_hive_secret(*, oid: str, jwt: str, name: str) -> str:
    from limacharlie import errors
    from limacharlie.client import Client
    from limacharlie.sdk.hive import Hive
    from limacharlie.sdk.organization import Organization

    # The SDK reads LC_API_URL once, at import; keep it in step with our setting.
    _sdk().ROOT_URL = settings.LC_API_URL
    try:
        client = _client_with_only_this_jwt(Client, oid=oid, jwt=jwt)
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


def organization_name(*, oid: str, jwt: str) -> str:
    """The organisation's name from LimaCharlie (`GET /v1/orgs/{oid}`, the SDK's organisation info),
    read with the call's JWT; "" when it cannot be read. Never raises: a name is a nicety, and the call
    that asks for it must not fail for it."""
    if not jwt:
        return ""
    try:
        from limacharlie.client import Client
        from limacharlie.sdk.organization import Organization

        _sdk().ROOT_URL = settings.LC_API_URL
        client = _client_with_only_this_jwt(Client, oid=oid, jwt=jwt)
        info = Organization(client).get_info()
    except Exception as exc:  # noqa: BLE001 - any failure leaves the name unread, and is logged
        logger.warning("could not read the name of org %s from LimaCharlie: %s", oid, type(exc).__name__)
        return ""
    name = info.get("name") if isinstance(info, dict) else None
    return name.strip()[:200] if isinstance(name, str) else ""


def _client_with_only_this_jwt(client_class: Any, *, oid: str, jwt: str) -> Any:
    """A Client that can act with the call's JWT and nothing else.

    The SDK resolves credentials from the environment (`LC_API_KEY`, `LC_UID`, `LC_OID`) and its config
    file, and when the JWT is refused it mints a new one with them: with an operator's key in this
    process's environment, a call with a bogus JWT would read the secret anyway. So those are wiped
    and a refusal is never "refreshed"."""
    from limacharlie import errors

    def refuse_refresh(_client: Any) -> None:
        raise errors.AuthenticationError("the call's JWT was refused", code=401)

    client = client_class(oid=oid, jwt=jwt, timeout=settings.LC_API_TIMEOUT_SECONDS, on_refresh_auth=refuse_refresh)
    client._api_key = client._uid = client._oauth_creds = None
    return client


def _lc_error_code(exc: Exception) -> str | None:
    code = getattr(exc, "error_code", None)
    if isinstance(code, str):
        return code
    return "RECORD_NOT_FOUND" if "RECORD_NOT_FOUND" in str(exc) else None


# --- the extension's webhook adapter (lc-extension's CreateExtensionAdapter / DeleteExtensionAdapter) ---

EXTENSION_NAME = ADAPTER_NAME
ADAPTER_TAGS = ["lc:system", f"ext:{EXTENSION_NAME}"]


class AdapterError(Exception):
    """Making or removing the adapter failed. The message names the step, never the JWT or the secret."""


@dataclass(frozen=True)
class AdapterMade:
    installation_key: str
    hooks_url: str  # https://<the organisation's hook domain>

    def __repr__(self) -> str:
        return f"AdapterMade(installation_key={self.installation_key!r}, hooks_url={self.hooks_url!r})"


def adapter_ensure(*, oid: str, jwt: str, secret: str) -> AdapterMade:
    """Make the organisation's webhook adapter whole, as the framework does and with its words: one
    installation key tagged lc:system and ext:ext-twilio (the one the Hive record names is reused, others
    of ours deleted), and the `cloud_sensor` record named after the extension, holding `secret`. Running
    it again changes nothing but the record's secret, so it is safe on every subscribe and update."""
    org = _organization(oid, jwt)
    hooks = _step("read the organisation's URLs", lambda: org.get_urls().get("hooks", ""))
    if not isinstance(hooks, str) or not hooks:
        raise AdapterError("LimaCharlie gave no hook domain for the organisation")
    named = _key_of(_recorded(org))
    keys = _step("list the installation keys", org.get_installation_keys)
    ours = [iid for iid, key in (keys or {}).items() if _is_ours(key)]
    iid = named if named in ours else (ours[0] if ours else "")
    if not iid:
        made = _step(
            "create the installation key",
            lambda: org.create_installation_key(f"ext {EXTENSION_NAME} webhook adapter", tags=ADAPTER_TAGS),
        )
        iid = str((made or {}).get("iid", ""))
        if not iid:
            raise AdapterError("LimaCharlie created no installation key (no iid in its answer)")
    _step("write the cloud_sensor record", lambda: _hive(org).set(_adapter_record(oid, iid, secret)))
    for extra in ours:
        if extra != iid:
            _forgiving("delete a duplicate installation key", lambda extra=extra: org.delete_installation_key(extra))
    hooks_url = hooks if hooks.startswith(("http://", "https://")) else f"https://{hooks}"
    return AdapterMade(installation_key=iid, hooks_url=hooks_url.rstrip("/"))


def adapter_present(*, oid: str, jwt: str, secret: str) -> bool:
    """Whether the organisation still holds the adapter as made: its record, with this secret."""
    record = _recorded(_organization(oid, jwt))
    return bool(record) and record.get("secret") == secret and bool(_key_of(record))


def adapter_delete(*, oid: str, jwt: str) -> None:
    """Remove the adapter: the Hive record, then every installation key of ours. Already gone is done."""
    org = _organization(oid, jwt)
    _forgiving("delete the cloud_sensor record", lambda: _hive(org).delete(EXTENSION_NAME))
    keys = _step("list the installation keys", org.get_installation_keys)
    for iid, key in (keys or {}).items():
        if _is_ours(key):
            _forgiving("delete the installation key", lambda iid=iid: org.delete_installation_key(iid))


def _adapter_record(oid: str, iid: str, secret: str) -> Any:
    from limacharlie.sdk.hive import HiveRecord

    options = {
        "hostname": EXTENSION_NAME,
        "identity": {"oid": oid, "installation_key": iid},
        "platform": "json",
        "sensor_seed_key": EXTENSION_NAME,
        "mapping": {},
    }
    data = {"sensor_type": "webhook", "webhook": {"secret": secret, "client_options": options}}
    return HiveRecord(name=EXTENSION_NAME, data=data, enabled=True, tags=list(ADAPTER_TAGS))


def _is_ours(key: Any) -> bool:
    tags = key.get("tags") if isinstance(key, dict) else None
    if isinstance(tags, str):
        tags = tags.split(",")
    return isinstance(tags, list) and f"ext:{EXTENSION_NAME}" in tags


def _recorded(org: Any) -> dict[str, Any]:
    """The existing Hive record's `webhook` block ({} when there is none)."""
    try:
        record = _hive(org).get(EXTENSION_NAME)
    except Exception as exc:  # noqa: BLE001 - a missing record is the usual case; the rest fails below
        if _lc_error_code(exc) == "RECORD_NOT_FOUND" or getattr(exc, "status_code", 0) == 404:
            return {}
        raise _failure("read the cloud_sensor record", exc) from None
    data = record.data if isinstance(record.data, dict) else {}
    webhook = data.get("webhook")
    return webhook if isinstance(webhook, dict) else {}


def _key_of(webhook: dict[str, Any]) -> str:
    """The installation key a record's `webhook` block names ("" when none)."""
    options = webhook.get("client_options") or {}
    return str((options.get("identity") or {}).get("installation_key") or "")


def _organization(oid: str, jwt: str) -> Any:
    if not jwt:
        raise AdapterError("the event carried no org JWT")
    from limacharlie.client import Client
    from limacharlie.sdk.organization import Organization

    _sdk().ROOT_URL = settings.LC_API_URL
    return Organization(_client_with_only_this_jwt(Client, oid=oid, jwt=jwt))


def _hive(org: Any) -> Any:
    from limacharlie.sdk.hive import Hive

    return Hive(org, "cloud_sensor")


def _step(what: str, call: Any) -> Any:
    """One API call; a failure becomes AdapterError naming the step and the HTTP status only."""
    try:
        return call()
    except AdapterError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is logged by the caller and retried later
        raise _failure(what, exc) from None


def _forgiving(what: str, call: Any) -> None:
    """A delete: what is already gone is deleted."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - see _step
        if _lc_error_code(exc) == "RECORD_NOT_FOUND" or getattr(exc, "status_code", 0) == 404:
            return
        raise _failure(what, exc) from None


def _failure(what: str, exc: Exception) -> AdapterError:
    status = getattr(exc, "status_code", None)
    code = _lc_error_code(exc)
    if type(exc).__name__ in ("AuthenticationError", "PermissionDeniedError"):
        code = "the event's JWT was refused, or the extension lacks the permission"
    detail = ", ".join(p for p in (f"HTTP {status}" if status else "", code or "") if p) or type(exc).__name__
    return AdapterError(f"could not {what} ({detail})")
