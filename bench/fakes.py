"""The fake Twilio and fake LimaCharlie of the tests, run as their own process for `make bench`.

The fake Twilio answers every message after `--twilio-latency-ms` (Twilio's own answer time is a few
hundred ms; the benchmark uses 100 ms). It records when each POST arrived, by recipient (`To`), as soon as
it has read the request, and serves `GET /_bench/stats` (how many POSTs it has answered, and how many
status callbacks the service took), `GET /_bench/arrivals` (the arrivals by recipient) and
`GET /_bench/reset`. As Twilio does, it reports each message `sent`, then `delivered`, to the message's
`StatusCallback`, signed with the account's Auth Token, a second after creating it; the service's public
URL is https, so the callback goes to its port over plain HTTP with `X-Forwarded-Proto: https`, as from
the TLS proxy in front of it.

The fake LimaCharlie is the tests' (Hive secrets, the webhook adapter's installation keys, `cloud_sensor`
record and URLs, and the hook receiving events); `GET /_bench/hook` counts what the hook received (POSTs,
events, events by recipient and by kind) and `GET /_bench/hook/reset` forgets it. Both fakes run in their
own process so that their Python work does not compete for the GIL with the load generator.

    python -m bench.fakes --twilio-latency-ms 100 --tenants tenants.json   # [{"oid", "jwt", "account_sid", "auth_token"}]

`--tenants` adds each organisation with its own Twilio account (its Hive secret `twilio` = `SID/TOKEN`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import signal
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes import limacharlie as fake_limacharlie
from tests.fakes import twilio as fake_twilio

RECEIPT_DELAY = 1.0  # seconds from a message's creation to its first status callback
RECEIPT_SENDERS = 4
RECEIPT_STATUSES = ("sent", "delivered")


def _no_delay(handler: Any) -> None:
    # http.server writes the headers and the body in two sends; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK (40 ms on Linux), which real Twilio does not add.
    handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _BenchLimaCharlieHandler(fake_limacharlie._Handler):
    fake: BenchLimaCharlie

    def setup(self) -> None:
        super().setup()
        _no_delay(self)

    def do_GET(self) -> None:
        if self.path == "/_bench/hook":
            return self.send_json(200, self.fake.hook_stats())
        if self.path == "/_bench/hook/reset":
            with self.fake.lock:
                self.fake.hook_events, self.fake.hook_posts = {}, []
            return self.send_json(200, {})
        super().do_GET()


class BenchLimaCharlie(fake_limacharlie.FakeLimaCharlie):
    handler_class = _BenchLimaCharlieHandler

    def hook_stats(self) -> dict[str, Any]:
        """What the hook took (POSTs, events, and events by recipient and by kind), and how many adapters exist."""
        with self.lock:
            received = [event for events in self.hook_events.values() for event in events]
            posts, adapters = len(self.hook_posts), len(self.cloud_sensors)
        by_recipient = Counter(str(event.get("recipient", "")) for event in received)
        kinds = Counter(str(event.get("kind", "")) for event in received)
        return {
            "posts": posts,
            "events": len(received),
            "by_recipient": by_recipient,
            "kinds": kinds,
            "adapters": adapters,
        }


class _BenchTwilioHandler(fake_twilio._Handler):
    fake: BenchTwilio

    def setup(self) -> None:
        super().setup()
        _no_delay(self)

    def read_body(self) -> bytes:
        raw = super().read_body()
        to = parse_qs(raw.decode()).get("To", [""])[0]
        with self.fake.lock:
            self.fake.arrivals.setdefault(to, []).append(time.time())
        time.sleep(self.fake.latency)
        return raw

    def do_POST(self) -> None:
        super().do_POST()
        with self.fake.lock:
            # The benchmark sends thousands of messages: keep counts, not every form and message.
            self.fake.count += 1
            self.fake.received.clear()
            self.fake.messages.clear()
            self.fake.status_callbacks.clear()

    def do_GET(self) -> None:
        if self.path == "/_bench/stats":
            with self.fake.lock:
                stats = {"count": self.fake.count, "receipts": self.fake.receipts, "refused": self.fake.refused}
            return self.send_json(200, stats)
        if self.path == "/_bench/arrivals":
            with self.fake.lock:
                return self.send_json(200, self.fake.arrivals)
        if self.path == "/_bench/reset":
            with self.fake.lock:
                self.fake.count = self.fake.receipts = self.fake.refused = 0
                self.fake.arrivals = {}
            return self.send_json(200, {})
        super().do_GET()


class BenchTwilio(fake_twilio.FakeTwilio):
    handler_class = _BenchTwilioHandler

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency, self.count = latency, 0
        self.arrivals: dict[str, list[float]] = {}  # To -> when each POST to it arrived
        self.receipts = self.refused = 0  # status callbacks the service answered 200, and not
        self.due: queue.SimpleQueue[tuple[float, str, dict[str, str]]] = queue.SimpleQueue()

    def create(self, account_sid: str, form: dict[str, str]) -> dict[str, Any]:
        message = super().create(account_sid, form)
        if form.get("StatusCallback"):
            self.due.put((time.time() + RECEIPT_DELAY, form["StatusCallback"], message))
        return message

    def start_receipts(self) -> None:
        for _ in range(RECEIPT_SENDERS):
            threading.Thread(target=self._send_receipts, daemon=True).start()

    def _send_receipts(self) -> None:
        """Each message's status callbacks, in order, over one keep-alive connection per thread."""
        connection: http.client.HTTPConnection | None = None
        while True:
            due, url, message = self.due.get()
            time.sleep(max(0.0, due - time.time()))
            for status in RECEIPT_STATUSES:
                ok = False
                for _ in range(2):  # a kept-alive connection the server has closed meanwhile: once more, anew
                    connection = connection or http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
                    answer = self._receipt(connection, url, message, status)
                    if answer is None:
                        connection.close()
                        connection = None
                        continue
                    ok = answer == 200
                    break
                with self.lock:
                    self.receipts += ok
                    self.refused += not ok

    def _receipt(
        self, connection: http.client.HTTPConnection, url: str, message: dict[str, Any], status: str
    ) -> int | None:
        """One status callback: the service's HTTP status, or None when the connection failed."""
        hook = self.message_status(message, status, self.accounts[message["account_sid"]], url)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": hook.signature,
            "X-Forwarded-Proto": "https",
        }
        try:
            connection.request("POST", hook.path, urlencode(hook.form), headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            return None
        return response.status


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--twilio-latency-ms", type=float, default=100)
    parser.add_argument("--tenants", required=True, help="a JSON file: a list of {oid, jwt, account_sid, auth_token}")
    args = parser.parse_args(argv)

    twilio = BenchTwilio(args.twilio_latency_ms / 1000)
    lc = BenchLimaCharlie()
    with open(args.tenants) as f:
        for tenant in json.load(f):
            twilio.add_account(tenant["account_sid"], tenant["auth_token"])
            lc.add_org(tenant["oid"], tenant["jwt"])
            lc.add_secret(tenant["oid"], "twilio", f"{tenant['account_sid']}/{tenant['auth_token']}")
    for fake in (twilio, lc):
        # The default listen backlog (5) drops connections when dozens of callers connect at once.
        fake.httpd.socket.listen(512)
        fake.start()
    twilio.start_receipts()
    print(json.dumps({"twilio": twilio.url, "limacharlie": lc.url}), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    twilio.stop()
    lc.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
