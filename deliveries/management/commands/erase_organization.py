"""Erase everything the service holds about one organisation (docs/deploy.md, "Data retention").

python manage.py erase_organization <organisation id>            # counts what it would delete
python manage.py erase_organization <organisation id> --confirm  # deletes it, in one transaction
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from deliveries.services.organizations import organization_erase


class Command(BaseCommand):
    help = "Erase one organisation's deliveries, replies, credentials and records. Without --confirm, only counts."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("oid", help="the LimaCharlie organisation id (a UUID)")
        parser.add_argument("--confirm", action="store_true", help="delete; without it nothing is changed")

    def handle(self, *args: Any, **options: Any) -> None:
        oid = options["oid"].strip().lower()
        counts = organization_erase(oid=oid, confirm=options["confirm"])
        if counts is None:
            raise CommandError(f"no organisation {oid} is stored")
        verb = "Deleted" if options["confirm"] else "Would delete"
        self.stdout.write(f"{verb} for organisation {oid}:")
        for name, count in counts.items():
            self.stdout.write(f"  {count:>8}  {name}")
        if not options["confirm"]:
            self.stdout.write("Nothing was changed: run again with --confirm to delete.")
