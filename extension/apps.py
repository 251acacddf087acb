from __future__ import annotations

from django.apps import AppConfig


class ExtensionConfig(AppConfig):
    name = "extension"
