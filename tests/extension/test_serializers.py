"""The run call's serializers copy their fields shallowly (extension.handlers.LightSerializer): each
call must still validate with fields of its own."""

from __future__ import annotations

from extension.handlers import OrgSerializer, RunDataSerializer


def test_each_validation_binds_fields_of_its_own() -> None:
    first, second = RunDataSerializer(data={}), RunDataSerializer(data={})
    for name, field in first.fields.items():
        assert field is not second.fields[name]
        assert field.parent is first and second.fields[name].parent is second
        assert field is not RunDataSerializer._declared_fields[name]


def test_one_calls_errors_do_not_leak_into_the_next() -> None:
    refused = OrgSerializer(data={"oid": "not-a-uuid", "jwt": "has a space"})
    assert not refused.is_valid()
    accepted = OrgSerializer(data={"oid": "0A52C2FD-94D4-4EA2-ACCE-F2A5587E167D"})
    assert accepted.is_valid(), accepted.errors
    assert accepted.validated_data == {"oid": "0a52c2fd-94d4-4ea2-acce-f2a5587e167d", "jwt": "", "ident": ""}
