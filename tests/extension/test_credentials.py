from __future__ import annotations

import pytest

from extension.credentials import CredentialError, choose_reference, parse_credential, secret_name


@pytest.mark.parametrize(
    ("request_secret", "config_secret", "chosen"),
    [("hive://secret/a", "b", "hive://secret/a"), ("", "b", "b"), (None, None, "twilio"), ("  ", "", "twilio")],
)
def test_the_request_parameter_wins_then_the_config_then_twilio(
    request_secret: str | None, config_secret: str | None, chosen: str
) -> None:
    assert choose_reference(request_secret, config_secret) == chosen


@pytest.mark.parametrize(
    ("reference", "name"), [("hive://secret/sms", "sms"), ("sms", "sms"), ("hive://secret/sms/", "sms")]
)
def test_a_reference_names_its_secret(reference: str, name: str) -> None:
    assert secret_name(reference) == name


def test_a_credential_splits_on_the_first_slash_only() -> None:
    sid = "AC" + "0123456789abcdef" * 2
    credential = parse_credential(f"{sid}/tok/en", "secret 'x'")
    assert (credential.account_sid, credential.auth_token) == (sid, "tok/en")
    assert "tok/en" not in repr(credential)


def test_an_unreadable_reference_is_refused_by_name() -> None:
    with pytest.raises(CredentialError, match=r"the secret reference must be a secret name \("):
        secret_name("a/b")
