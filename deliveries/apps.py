from __future__ import annotations

from django.apps import AppConfig


class DeliveriesConfig(AppConfig):
    name = "deliveries"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Register the Celery tasks in every process (web included): services.queue enqueues them by
        # name from the app's registry, so that the services never import the tasks that call them.
        from deliveries import tasks  # noqa: F401
