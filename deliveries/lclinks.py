"""Links into LimaCharlie's web app for what a rule passed in an alert's `context`. Pure functions."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

WEB_APP = "https://app.limacharlie.io"
DETECT_ID = re.compile(r"[0-9a-fA-F-]{8,64}")


def detection_url(*, oid: str, context: Any) -> str:
    """The detection the alert is about, in LimaCharlie's web app, or "".

    A detection carries its own `link` (`https://app.limacharlie.io/orgs/<oid>/sensors/<sid>/timeline?
    time=<ts>&selected=<atom>`): a rule passing `link: "{{ .link }}"` in its context gets exactly that.
    Given only `detect_id`, the link is the organisation's detection page of that id."""
    if not isinstance(context, dict):
        return ""
    link = context.get("link")
    if isinstance(link, str) and link.startswith(f"{WEB_APP}/orgs/{oid}/"):
        return link
    detect_id = context.get("detect_id")
    if isinstance(detect_id, str) and DETECT_ID.fullmatch(detect_id):
        return f"{WEB_APP}/orgs/{quote(oid, safe='')}/detections/{detect_id}"
    return ""
