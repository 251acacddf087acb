"""Send a signed, gzipped `run` request exactly as LimaCharlie would, to test a deployment by hand.

    python manage.py lc_request --url https://sms.example.com/extension/ \\
        --to +14155550100 --from +14155550199 --body "test alert" --oid <org id> --jwt <org jwt>

The Shared Secret is LC_SHARED_SECRET (from the environment or `.env`) unless --shared-secret-env
names another variable: it is never taken on the command line, where shell history would keep it.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from extension.envelope import SIGNATURE_HEADER, build, gzip_bytes, sign


class Command(BaseCommand):
    help = "Send a signed, gzipped LimaCharlie `run` request to an ext-twilio intake URL."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", required=True, help="the intake URL, e.g. http://127.0.0.1:8000/extension/")
        parser.add_argument("--to", required=True, help="recipient(s) in E.164, comma-separated")
        parser.add_argument("--from", dest="from_", default="", help="sender number or MG SID")
        parser.add_argument("--body", required=True)
        parser.add_argument("--oid", default=str(uuid.UUID(int=0)), help="LimaCharlie org id")
        parser.add_argument("--jwt", default="", help="org JWT the service uses to read the Hive secret")
        parser.add_argument(
            "--secret",
            default="",
            help=(
                "the rule's `secret`: a secret name in the organisation's Secrets Manager (e.g. twilio-eu), "
                "hive://secret/NAME, or the credential itself as ACCOUNT_SID/AUTH_TOKEN (used for this call only, "
                "never kept; it stays in your shell history). Default: the secret named twilio"
            ),
        )
        parser.add_argument("--idempotency-key", default="", help="defaults to a new random key")
        parser.add_argument("--shared-secret-env", default="LC_SHARED_SECRET", help="variable holding the secret")
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args: Any, **options: Any) -> None:
        var = options["shared_secret_env"]
        secret = os.environ.get(var) or (settings.LC_SHARED_SECRET if var == "LC_SHARED_SECRET" else "")
        if not secret:
            raise CommandError(f"{var} is not set: the request cannot be signed")
        data = {"body": options["body"], "to": options["to"]}
        if options["from_"]:
            data["from"] = options["from_"]
        if options["secret"]:
            data["secret"] = options["secret"]
        block = {
            "org": {"oid": options["oid"], "jwt": options["jwt"], "ident": "lc_request"},
            "action": "run",
            "data": data,
            "config": {},
            "resource_state": None,
            "inv_id": "",
        }
        body = build("request", block, options["idempotency_key"] or str(uuid.uuid4()))
        try:
            response = requests.post(
                options["url"],
                data=gzip_bytes(body),
                headers={
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    SIGNATURE_HEADER: sign(secret, body),
                },
                timeout=options["timeout"],
            )
        except requests.RequestException as exc:
            raise CommandError(f"could not reach {options['url']}: {type(exc).__name__}") from None
        self.stdout.write(f"HTTP {response.status_code}")
        try:
            self.stdout.write(json.dumps(response.json(), indent=2))
        except ValueError:
            self.stdout.write(response.text[:2000])
        if response.status_code != 200:
            raise CommandError(f"the service answered HTTP {response.status_code}")
