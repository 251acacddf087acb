"""A fake of LimaCharlie's Hive secret API (and its organisation info, `GET /v1/orgs/{oid}`, the name):
it serves them only to that org's Bearer JWT.

Answers as ../shared/reference/limacharlie-extension-protocol.md describes: a missing record is
HTTP 400 with `lc_error_code:RECORD_NOT_FOUND`, a wrong or expired JWT is 401.
`fake.fail_next(status)` makes the next reads fail with that status (e.g. 500, 429). POST to any
path is the JWT service, minting an org's JWT for a key in `fake.api_keys`.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.base import FakeServer, QuietHandler


class _Handler(QuietHandler):
    fake: FakeLimaCharlie

    def do_GET(self) -> None:
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        with self.fake.lock:
            self.fake.requests.append((self.path, self.headers.get("Authorization", "")))
            failure = self.fake.failures.pop(0) if self.fake.failures else None
        if failure:
            return self.send_json(failure, {"error": f"simulated failure {failure}"})
        if len(parts) == 3 and parts[:2] == ["v1", "orgs"]:
            return self._org_info(parts[2])
        # /v1/hive/secret/{oid}/{name}/data
        if len(parts) != 6 or parts[:3] != ["v1", "hive", "secret"] or parts[5] != "data":
            return self.send_json(404, {"error": "not found"})
        oid, name = parts[3], parts[4]
        if self.headers.get("Authorization") != f"Bearer {self.fake.jwts.get(oid)}":
            return self.send_json(401, {"error": "unauthorized"})
        value = self.fake.secrets.get((oid, name))
        if value is None:
            return self.send_json(400, {"error": "lc_error_code:RECORD_NOT_FOUND - record not found"})
        self.send_json(200, {"data": {"secret": value}, "usr_mtd": {"enabled": True}, "sys_mtd": {"etag": "x"}})

    def _org_info(self, oid: str) -> None:
        """/v1/orgs/{oid}: the organisation's info (its name) to that org's JWT."""
        if self.headers.get("Authorization") != f"Bearer {self.fake.jwts.get(oid)}":
            return self.send_json(401, {"error": "unauthorized"})
        self.send_json(200, {"oid": oid, "name": self.fake.names.get(oid, ""), "sensor_version": "4.33.0"})

    def do_POST(self) -> None:
        # LimaCharlie's JWT service (LC_JWT_URL): mints an org JWT for an API key. The service must
        # never use it; it is here so a test can prove that.
        form = {k: v[0] for k, v in parse_qs(self.read_body().decode()).items()}
        with self.fake.lock:
            self.fake.requests.append((self.path, "POST " + ",".join(sorted(form))))
            known = form.get("secret") in self.fake.api_keys
            jwt = self.fake.jwts.get(form.get("oid", ""))
        if not known or jwt is None:
            return self.send_json(401, {"error": "unknown api key"})
        self.send_json(200, {"jwt": jwt})


class FakeLimaCharlie(FakeServer):
    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.jwts: dict[str, str] = {}
        self.secrets: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str]] = []
        self.failures: list[int] = []
        self.api_keys: set[str] = set()
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
