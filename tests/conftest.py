from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from django.conf import settings

from config.celery import app as celery_app
from extension.envelope import SIGNATURE_HEADER, build, gzip_bytes, sign
from tests.chaos.harness import wait_until
from tests.fakes.limacharlie import FakeLimaCharlie
from tests.fakes.twilio import FakeTwilio

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_BASE_URL = "https://sms.example.com"
LOG = Path(settings.VAR_DIR) / "test-worker.log"
WORKER_DB_APPLICATION = "ext-twilio-test-worker"


@dataclass(frozen=True)
class Tenant:
    """An organisation as LimaCharlie and Twilio know it. Numbers are in reserved fictional ranges."""

    oid: str
    jwt: str
    account_sid: str
    auth_token: str
    sender: str = "+15005550006"
    recipient: str = "+15005550001"

    @property
    def credential(self) -> str:
        return f"{self.account_sid}/{self.auth_token}"


@pytest.fixture(scope="session")
def twilio_server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="session")
def lc_server() -> Iterator[FakeLimaCharlie]:
    with FakeLimaCharlie() as fake:
        yield fake


@pytest.fixture
def fake_twilio(twilio_server: FakeTwilio, settings: Any) -> FakeTwilio:
    with twilio_server.lock:
        twilio_server.received.clear()
        twilio_server.messages.clear()
        twilio_server.calls.clear()
        twilio_server.plans.clear()
        twilio_server.lookups.clear()
        twilio_server.lookup_failures = 0
        twilio_server.every_nth = (0, "")
        twilio_server.refuse.clear()
        twilio_server.chaos.clear()
    settings.TWILIO_API_BASE_URL = twilio_server.url
    return twilio_server


@pytest.fixture
def fake_lc(lc_server: FakeLimaCharlie, settings: Any) -> FakeLimaCharlie:
    with lc_server.lock:
        lc_server.requests.clear()
        lc_server.failures.clear()
        lc_server.api_keys.clear()
        lc_server.calls.clear()
        lc_server.hook_posts.clear()
        lc_server.hook_failures = 0
        lc_server.names.clear()
    settings.LC_API_URL = lc_server.url
    settings.LC_HOOK_BASE_URL = lc_server.url  # the adapter's hook, as the worker has it
    return lc_server


@pytest.fixture
def tenant(fake_twilio: FakeTwilio, fake_lc: FakeLimaCharlie) -> Tenant:
    t = Tenant(
        oid=str(uuid.uuid4()),
        jwt="eyJ" + secrets.token_urlsafe(40),
        account_sid="AC" + secrets.token_hex(16),
        auth_token=secrets.token_hex(16),
    )
    fake_lc.add_org(t.oid, t.jwt)
    fake_lc.add_secret(t.oid, "twilio", t.credential)
    fake_twilio.add_account(t.account_sid, t.auth_token)
    return t


@pytest.fixture(autouse=True)
def eager_celery(request: pytest.FixtureRequest) -> Iterator[None]:
    """Unit tests run tasks in-process; tests marked `worker` use a real worker and broker."""
    eager = request.node.get_closest_marker("worker") is None
    celery_app.conf.task_always_eager = eager
    yield
    celery_app.conf.task_always_eager = False


def run_block(tenant: Tenant, **data: Any) -> dict[str, Any]:
    """A `request` block shaped like the one LimaCharlie sends for a D&R `extension request`."""
    data.setdefault("body", "Detection: suspicious powershell on host-17")
    data.setdefault("from", tenant.sender)
    data.setdefault("to", tenant.recipient)
    return {
        "org": {"oid": tenant.oid, "jwt": tenant.jwt, "ident": "dr-general/ext-twilio-rule"},
        "action": "run",
        "data": {k: v for k, v in data.items() if v is not None},
        "config": {},
        "resource_state": None,
        "inv_id": "inv-" + secrets.token_hex(4),
    }


def make_delivery(tenant: Tenant, **fields: Any) -> Any:
    """A stored delivery (and its organisation with credential, and for an alert text or call the
    alert of its idempotency key), as the intake would have left it."""
    from deliveries.models import AlertRequest, Delivery, Organization
    from deliveries.services.credentials import credential_for

    org, _ = Organization.objects.get_or_create(oid=tenant.oid)
    credential = credential_for(
        organization=org,
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        now=org.created_at,
        from_secrets_manager=True,  # as the intake stores the tenant's secret `twilio`
    )
    values: dict[str, Any] = {
        "organization": org,
        "credential": credential,
        "idempotency_key": str(uuid.uuid4()),
        "from_number": tenant.sender,
        "to_number": tenant.recipient,
        "body": "Detection: test",
        "original_length": 15,
        "encoding": "gsm7",
        "segments": 1,
    }
    values.update(fields)
    if values.get("kind", "alert") == "alert" and "alert" not in values and "alert_id" not in values:
        values["alert"] = AlertRequest.objects.get_or_create(
            organization=org, idempotency_key=values["idempotency_key"], defaults={"reply": {}}
        )[0]
    return Delivery.objects.create(**values)


class Intake:
    """Posts to /extension/ exactly as LimaCharlie does: compact JSON, gzipped, signed."""

    def __init__(self, client: Any, capture: Callable[..., Any]) -> None:
        self.client, self.capture = client, capture

    def post_bytes(
        self, body: bytes, *, compress: bool = True, signature: str | None = "auto", secret: str | None = None
    ) -> Any:
        headers: dict[str, str] = {}
        if signature == "auto":
            signature = sign(secret or settings.LC_SHARED_SECRET, body)
        if signature is not None:
            headers[f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}"] = signature
        payload = gzip_bytes(body) if compress else body
        if compress:
            headers["HTTP_CONTENT_ENCODING"] = "gzip"
        with self.capture(execute=True):
            return self.client.post("/extension/", data=payload, content_type="application/json", **headers)

    def send(self, message_type: str, block: dict[str, Any], key: str | None = None, **kwargs: Any) -> Any:
        return self.post_bytes(build(message_type, block, key or str(uuid.uuid4())), **kwargs)

    def run(self, tenant: Tenant, key: str | None = None, **data: Any) -> Any:
        return self.send("request", run_block(tenant, **data), key)


@pytest.fixture
def intake(client: Any, django_capture_on_commit_callbacks: Callable[..., Any]) -> Intake:
    return Intake(client, django_capture_on_commit_callbacks)


def post_webhook(client: Any, webhook: Any) -> Any:
    """Post what the fake Twilio built (tests.fakes.twilio.Webhook) as Twilio would: a signed form."""
    from urllib.parse import urlencode

    return client.post(
        webhook.path,
        urlencode(webhook.form),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=webhook.signature,
    )


# --- a real Celery worker ---------------------------------------------------------------------------


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Worker:
    """A real `celery worker` process on the configured broker, sharing the test database.
    Tests may kill it (SIGKILL, as a crash would) and start it again."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def start(self) -> None:
        self.log = open(LOG, "ab")  # noqa: SIM115 - closed in stop()
        offset = LOG.stat().st_size
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=threads",
                "--concurrency=4",
                "--loglevel=INFO",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while b"ready." not in LOG.read_bytes()[offset:]:
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("celery worker did not start:\n" + LOG.read_text()[offset:])
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        if self.log is not None:
            self.log.close()


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: Any, django_db_blocker: Any, twilio_server: FakeTwilio, lc_server: FakeLimaCharlie
) -> Iterator[Worker]:
    with django_db_blocker.unblock():
        database_url = _database_url()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TWILIO_API_BASE_URL": twilio_server.url,
        "LC_API_URL": lc_server.url,
        "LC_HOOK_BASE_URL": lc_server.url,
        # Where calls send their keypress (<Gather action>) and status callbacks; the tests post
        # those to the test client, signed over this URL (tests/deliveries/test_escalation*.py).
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        # Names the worker's PostgreSQL connections (libpq reads it), so a test can find them.
        "PGAPPNAME": WORKER_DB_APPLICATION,
    }
    subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "purge", "-f"],
        env=env,
        cwd=ROOT,
        check=False,
        capture_output=True,
        timeout=60,
    )
    LOG.write_bytes(b"")
    worker = Worker(env)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def celery_worker(celery_worker_process: Worker) -> Worker:
    """The session's worker, running (restarted if a test killed it)."""
    if celery_worker_process.proc is None or celery_worker_process.proc.poll() is not None:
        celery_worker_process.start()
    return celery_worker_process


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    return wait_until(predicate, timeout, "condition not met", interval)


# --- the audit desk: people in each role ----------------------------------------------------------

DESK_PASSWORD = "correct-horse-" + secrets.token_hex(8)  # made per run; never a committed secret
ROLES = {"soc_lead": "SOC lead", "operator": "Operator"}


def ensure_roles() -> None:
    """The groups the roles migration creates. A transactional test's flush empties the tables
    (groups included), so tests recreate them with the migration's own function."""
    import importlib

    from django.apps import apps

    importlib.import_module("deliveries.migrations.0004_audit_desk_roles").create_roles(apps)
    importlib.import_module("deliveries.migrations.0008_credential_per_delivery").let_both_roles_view_credentials(
        apps, None
    )
    importlib.import_module("deliveries.migrations.0009_replies_acknowledgement_escalation").grant_views(apps)
    importlib.import_module("deliveries.migrations.0016_loop_events_approvals").grant_views(apps)
    importlib.import_module("deliveries.migrations.0019_desk_names_search_and_alert_page").grant(apps)


def make_user(role: str) -> Any:
    """A staff user in `role`: "soc_lead", "operator", "superuser" or "staff" (no group)."""
    from django.contrib.auth.models import Group, User

    ensure_roles()
    user = User.objects.create_user(
        username=f"{role}-{secrets.token_hex(3)}",
        password=DESK_PASSWORD,
        is_staff=True,
        is_superuser=role == "superuser",
    )
    if role in ROLES:
        user.groups.add(Group.objects.get(name=ROLES[role]))
    return user


# Hosts a page may name without loading anything from them: SVG's namespace is an identifier, not a fetch.
_NAMESPACE_HOSTS = {"www.w3.org"}


def off_site_addresses(page: str) -> set[str]:
    """Every absolute or protocol-relative address in a page (markup or script) on a host other than ours.

    Looking for the word "cdn" instead fails at random: a CSRF token is 64 random letters and digits.
    """
    found = re.findall(r"""(?:https?:)?//([A-Za-z0-9.-]+\.[A-Za-z]{2,})""", page)
    return {host for host in found if host not in _NAMESPACE_HOSTS}
