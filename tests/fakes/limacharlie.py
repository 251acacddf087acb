"""A fake of LimaCharlie's Hive secret API: it serves a secret only to that org's Bearer JWT.

Answers as ../shared/reference/limacharlie-extension-protocol.md describes: a missing record is
HTTP 400 with `lc_error_code:RECORD_NOT_FOUND`, a wrong or expired JWT is 401.
`fake.fail_next(status)` makes the next reads fail with that status (e.g. 500, 429).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

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


class FakeLimaCharlie(FakeServer):
    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.jwts: dict[str, str] = {}
        self.secrets: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str]] = []
        self.failures: list[int] = []

    def add_org(self, oid: str, jwt: str) -> None:
        with self.lock:
            self.jwts[oid] = jwt

    def add_secret(self, oid: str, name: str, value: str) -> None:
        with self.lock:
            self.secrets[(oid, name)] = value

    def fail_next(self, status: int, times: int = 1) -> None:
        with self.lock:
            self.failures.extend([status] * times)
