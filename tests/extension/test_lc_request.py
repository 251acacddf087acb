"""`lc_request`'s own words: its help names every form of secret reference the intake accepts."""

from __future__ import annotations

from extension import credentials
from extension.management.commands.lc_request import Command


def _secret_help() -> str:
    parser = Command().create_parser("manage.py", "lc_request")
    return next(action.help or "" for action in parser._actions if "--secret" in action.option_strings)


def test_its_secret_help_names_every_form_the_intake_accepts() -> None:
    text = _secret_help()

    assert "a secret name" in text and "hive://secret/NAME" in text and "ACCOUNT_SID/AUTH_TOKEN" in text
    # The three forms, as the intake reads them.
    assert credentials.secret_name("twilio-eu") == "twilio-eu"
    assert credentials.secret_name("hive://secret/twilio-eu") == "twilio-eu"
    assert credentials.looks_resolved("AC" + "0" * 32 + "/token")
