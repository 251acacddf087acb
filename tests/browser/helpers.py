"""What the desk's browser tests share: logging in, screenshots, and the check that a page does not
scroll sideways."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.conftest import DESK_PASSWORD

ROOT = Path(__file__).resolve().parent.parent.parent
SHOTS = ROOT / ("docs/screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "var/test/screenshots")

# Elements that reach past `width` CSS pixels: what makes a page scroll sideways, named for the failure.
WIDER_THAN = """width => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > width + 1 && getComputedStyle(e).position !== 'fixed')
  .slice(0, 8).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""


def fits(page: Any, width: int) -> None:
    """No sideways scrolling at `width`: the document is no wider than the screen, and nothing reaches
    past it (a phone's layout viewport would otherwise widen to the content, and hide the overflow)."""
    wide = page.evaluate(WIDER_THAN, width)
    scroll = page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll <= width and not wide, f"{page.url} is {scroll} px wide at {width} px: {wide}"


def wide(page: Any, width: int = 1366) -> None:
    page.set_viewport_size({"width": width, "height": 900})


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """A screenshot; full_page=False for what the screen shows (a phone's first screens, a long list's top)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def log_in(page: Any, live_server: Any, user: Any) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    assert "ext-twilio audit desk" in page.title() and "Django" not in page.content()
    page.fill("#id_username", user.username)
    page.fill("#id_password", DESK_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#at-a-glance")
