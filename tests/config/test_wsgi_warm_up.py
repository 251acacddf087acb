"""A web worker prepares at start what its first calls would otherwise wait for (config.wsgi)."""

from __future__ import annotations

from typing import Any

import pytest

from extension import credentials


def test_the_wsgi_module_loads_the_urlconf_and_the_limacharlie_sdk() -> None:
    credentials._sdk.cache_clear()
    from config import wsgi

    wsgi._warm_up()

    assert credentials._sdk.cache_info().currsize == 1


def test_a_failure_to_prepare_the_sdk_is_logged_and_left_to_the_first_call(
    monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    credentials._sdk.cache_clear()

    def broken() -> None:
        raise OSError("no CA bundle")

    monkeypatch.setattr(credentials, "_sdk", broken)
    credentials.warm_up()
    assert "could not prepare the LimaCharlie SDK" in caplog.text
