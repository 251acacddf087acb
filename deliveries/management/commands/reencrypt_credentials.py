"""Re-write every stored Twilio credential with the first FIELD_ENCRYPTION_KEY (after a rotation)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from deliveries import services


class Command(BaseCommand):
    help = "Re-encrypt stored Twilio credentials with the first key of FIELD_ENCRYPTION_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        count = services.credentials_reencrypt()
        self.stdout.write(f"Re-encrypted {count} stored Twilio credentials.")
