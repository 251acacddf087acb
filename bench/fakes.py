"""The fake Twilio and fake LimaCharlie of the tests, run as their own process for `make bench`.

The fake Twilio answers every message after `--twilio-latency-ms` (Twilio's own answer time is a few
hundred ms; the benchmark uses 100 ms). It records when each POST arrived, by recipient (`To`), as soon as
it has read the request, and serves `GET /_bench/stats` (how many POSTs it has answered),
`GET /_bench/arrivals` (the arrivals by recipient) and `GET /_bench/reset`. It runs in its own process so
that its Python work does not compete for the GIL with the load generator.

    python -m bench.fakes --twilio-latency-ms 100 --tenants tenants.json   # [{"oid", "jwt", "account_sid", "auth_token"}]

`--tenants` adds each organisation with its own Twilio account (its Hive secret `twilio` = `SID/TOKEN`).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from tests.fakes import limacharlie as fake_limacharlie
from tests.fakes import twilio as fake_twilio


def _no_delay(handler: Any) -> None:
    # http.server writes the headers and the body in two sends; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK (40 ms on Linux), which real Twilio does not add.
    handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _BenchLimaCharlieHandler(fake_limacharlie._Handler):
    def setup(self) -> None:
        super().setup()
        _no_delay(self)


class BenchLimaCharlie(fake_limacharlie.FakeLimaCharlie):
    handler_class = _BenchLimaCharlieHandler


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

    def do_GET(self) -> None:
        if self.path == "/_bench/stats":
            with self.fake.lock:
                return self.send_json(200, {"count": self.fake.count})
        if self.path == "/_bench/arrivals":
            with self.fake.lock:
                return self.send_json(200, self.fake.arrivals)
        if self.path == "/_bench/reset":
            with self.fake.lock:
                self.fake.count = 0
                self.fake.arrivals = {}
            return self.send_json(200, {})
        super().do_GET()


class BenchTwilio(fake_twilio.FakeTwilio):
    handler_class = _BenchTwilioHandler

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency, self.count = latency, 0
        self.arrivals: dict[str, list[float]] = {}  # To -> when each POST to it arrived


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
