"""Index operations for migrations that must not stop the intake while they run."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db.migrations.operations import AddIndex


class AddIndexWithoutBlockingWrites(AddIndexConcurrently):
    """AddIndex that lets writes go on while the index is built: CREATE INDEX CONCURRENTLY on PostgreSQL.

    Why: a plain CREATE INDEX blocks every insert and update of the table until it is built, and building
    reads the whole table, partial or not (0.14 to 0.6 s on a synthetic table of a million rows here, more
    on a busy server), while each `run` call from LimaCharlie waits for its insert. SQLite has no such
    option, and a write there waits for any other writer anyway: the plain AddIndex. The migration that uses
    it sets `atomic = False`, since PostgreSQL cannot build an index concurrently inside a transaction.
    Should a build fail half way, PostgreSQL keeps an INVALID index of that name: drop it and migrate again
    (docs/deploy.md)."""

    def describe(self) -> str:
        return f"{super().describe()} (concurrently on PostgreSQL)".replace("Concurrently create", "Create", 1)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
