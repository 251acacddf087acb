"""A fake of LimaCharlie's API, at its paths, for what this service calls:

- the organisation's info (`GET /v1/orgs/{oid}`, its name) to that org's Bearer JWT;
- the Hive secret API: a secret only to that org's Bearer JWT; a missing record is HTTP 400 with
  `lc_error_code:RECORD_NOT_FOUND`, a wrong or expired JWT is 401;
- what the extension's webhook adapter is made of: installation keys (`/v1/installationkeys/{oid}`),
  the `cloud_sensor` Hive (`/v1/hive/cloud_sensor/{oid}/{name}[/data]`), and the organisation's URLs
  (`/v1/orgs/{oid}/url`, no auth);
- the adapter itself, as the hook domain serves it: `POST /{oid}/{name}[/{secret}]` (or the secret in
  `lc-secret`) records the events it gets (`fake.hook_events`) when the secret is the record's.

`fake.fail_next(status)` makes the next API calls fail with that status (e.g. 500, 429);
`fake.hook_down(times)` makes the hook answer 503. POST to any other path is the JWT service,
minting an org's JWT for a key in `fake.api_keys`.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.base import FakeServer, QuietHandler

NOT_FOUND = {"error": "lc_error_code:RECORD_NOT_FOUND - record not found"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _Handler(QuietHandler):
    fake: FakeLimaCharlie

    def _route(self, verb: str) -> None:
        split = urlsplit(self.path)
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        raw = self.read_body()
        form = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
        form.update({k: v[0] for k, v in parse_qs(split.query).items()})
        if parts[0] != "v1" and UUID.fullmatch(parts[0]) and len(parts) in (2, 3) and verb == "POST":
            return self._hook(parts, raw)
        if parts[0] != "v1" and verb == "POST":
            return self._jwt(form)
        with self.fake.lock:
            self.fake.requests.append((self.path, self.headers.get("Authorization", "")))
            self.fake.calls.append((verb, split.path))
            failure = self.fake.failures.pop(0) if self.fake.failures else None
        if failure:
            return self.send_json(failure, {"error": f"simulated failure {failure}"})
        if parts[:2] == ["v1", "orgs"] and len(parts) == 4 and parts[3] == "url" and verb == "GET":
            return self.send_json(200, {"url": {"hooks": f"{parts[2][:8]}.hook.limacharlie.io", "webapp": "x"}})
        oid = parts[2] if len(parts) > 2 and parts[1] in ("installationkeys",) else (parts[3] if len(parts) > 3 else "")
        if len(parts) == 3 and parts[:2] == ["v1", "orgs"] and verb == "GET":
            return self._org_info(parts[2])
        if self.headers.get("Authorization") != f"Bearer {self.fake.jwts.get(oid)}":
            return self.send_json(401, {"error": "unauthorized"})
        if parts[1] == "installationkeys" and len(parts) == 3:
            return self._keys(verb, oid, form)
        if parts[1:3] == ["hive", "cloud_sensor"] and len(parts) in (5, 6):
            return self._cloud_sensor(verb, oid, parts[4], form)
        if parts[1:3] == ["hive", "secret"] and len(parts) == 6 and parts[5] == "data" and verb == "GET":
            value = self.fake.secrets.get((oid, parts[4]))
            if value is None:
                return self.send_json(400, NOT_FOUND)
            return self.send_json(
                200, {"data": {"secret": value}, "usr_mtd": {"enabled": True}, "sys_mtd": {"etag": "x"}}
            )
        self.send_json(404, {"error": "not found"})

    def _keys(self, verb: str, oid: str, form: dict[str, str]) -> None:
        with self.fake.lock:
            keys = self.fake.installation_keys.setdefault(oid, {})
            if verb == "GET":
                return self.send_json(200, {oid: {iid: dict(key) for iid, key in keys.items()}})
            if verb == "POST":
                iid = str(uuid.uuid4())
                tags = [t for t in form.get("tags", "").split(",") if t]
                keys[iid] = {"iid": iid, "desc": form.get("desc", ""), "tags": tags, "key": secrets.token_hex(8)}
                return self.send_json(200, {"iid": iid})
            if verb == "DELETE":
                if keys.pop(form.get("iid", ""), None) is None:
                    return self.send_json(400, NOT_FOUND)
                return self.send_json(200, {})
        self.send_json(405, {"error": "method"})

    def _cloud_sensor(self, verb: str, oid: str, name: str, form: dict[str, str]) -> None:
        with self.fake.lock:
            records = self.fake.cloud_sensors
            if verb == "GET":
                record = records.get((oid, name))
                return self.send_json(200, record) if record else self.send_json(400, NOT_FOUND)
            if verb == "POST":
                data = json.loads(form.get("data", "null"))
                records[(oid, name)] = {"data": data, "usr_mtd": json.loads(form.get("usr_mtd", "{}")), "sys_mtd": {}}
                return self.send_json(200, {"guid": "g", "name": name})
            if verb == "DELETE":
                if records.pop((oid, name), None) is None:
                    return self.send_json(400, NOT_FOUND)
                return self.send_json(200, {})
        self.send_json(405, {"error": "method"})

    def _hook(self, parts: list[str], raw: bytes) -> None:
        oid, name = parts[0], parts[1]
        secret = parts[2] if len(parts) == 3 else self.headers.get("lc-secret", "")
        with self.fake.lock:
            self.fake.hook_posts.append((oid, name))
            if self.fake.hook_failures:
                self.fake.hook_failures -= 1
                return self.send_json(503, {"error": "hook down"})
            record = self.fake.cloud_sensors.get((oid, name))
            expected = ((record or {}).get("data") or {}).get("webhook", {}).get("secret")
            if not expected or secret != expected:
                return self.send_json(401, {"error": "unauthorized"})
            body: Any = json.loads(raw)
            self.fake.hook_events.setdefault(oid, []).extend(body if isinstance(body, list) else [body])
        self.send_json(200, {})

    def _org_info(self, oid: str) -> None:
        """/v1/orgs/{oid}: the organisation's info (its name) to that org's JWT."""
        if self.headers.get("Authorization") != f"Bearer {self.fake.jwts.get(oid)}":
            return self.send_json(401, {"error": "unauthorized"})
        self.send_json(200, {"oid": oid, "name": self.fake.names.get(oid, ""), "sensor_version": "4.33.0"})

    def _jwt(self, form: dict[str, str]) -> None:
        # LimaCharlie's JWT service (LC_JWT_URL): mints an org JWT for an API key. The service must
        # never use it; it is here so a test can prove that.
        with self.fake.lock:
            self.fake.requests.append((self.path, "POST " + ",".join(sorted(form))))
            known = form.get("secret") in self.fake.api_keys
            jwt = self.fake.jwts.get(form.get("oid", ""))
        if not known or jwt is None:
            return self.send_json(401, {"error": "unknown api key"})
        self.send_json(200, {"jwt": jwt})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")


class FakeLimaCharlie(FakeServer):
    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.jwts: dict[str, str] = {}
        self.secrets: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str]] = []
        self.calls: list[tuple[str, str]] = []  # (verb, path) of every API call
        self.failures: list[int] = []
        self.api_keys: set[str] = set()
        self.installation_keys: dict[str, dict[str, dict[str, Any]]] = {}
        self.cloud_sensors: dict[tuple[str, str], dict[str, Any]] = {}
        self.hook_events: dict[str, list[dict[str, Any]]] = {}
        self.hook_posts: list[tuple[str, str]] = []
        self.hook_failures = 0
        self.names: dict[str, str] = {}

    def add_org(self, oid: str, jwt: str) -> None:
        with self.lock:
            self.jwts[oid] = jwt

    def set_name(self, oid: str, name: str) -> None:
        with self.lock:
            self.names[oid] = name

    def add_secret(self, oid: str, name: str, value: str) -> None:
        with self.lock:
            self.secrets[(oid, name)] = value

    def fail_next(self, status: int, times: int = 1) -> None:
        with self.lock:
            self.failures.extend([status] * times)

    def hook_down(self, times: int) -> None:
        with self.lock:
            self.hook_failures = times

    def events(self, oid: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.hook_events.get(oid, []))

    def keys(self, oid: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.installation_keys.get(oid, {}))
