from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()


def _warm_up() -> None:
    """What the first requests of each web worker would otherwise do, and wait for, done as it starts:
    import the URLconf (every view, the admin, the API document's views) and the LimaCharlie SDK with
    its SSL context. Measured: without it the first calls of a worker answered in up to ~0.8 s."""
    from django.urls import get_resolver

    from extension import credentials

    get_resolver().url_patterns  # noqa: B018 - the property imports the URLconf
    credentials.warm_up()


_warm_up()
