"""docs/configuration.md names every environment variable the settings read: a setting added to
config/settings.py without its line in the configuration reference fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
# The settings' own readers (config/env.py), and the methods of django-environ's `env` and os.environ.
HELPERS = {"mandatory", "secret", "integer", "flag", "url"}
METHODS = {"str", "int", "bool", "float", "list", "db", "url", "get"}
RECEIVERS = {"env", "os.environ"}


def _settings_modules() -> list[Path]:
    """config/settings.py, and the modules it may be split into: config/*settings*.py or a package."""
    config = ROOT / "config"
    return sorted({*config.glob("*settings*.py"), *config.glob("settings/**/*.py")})


def _read_by(tree: ast.AST) -> set[str]:
    """The variable names given as a literal first argument to a reader, or as a key of os.environ[...]."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and _reader(node):
            names.add(str(node.args[0].value))
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.ctx, ast.Load)
        ):
            names.add(str(node.slice.value))
    return {name for name in names if name.isupper()}


def _reader(call: ast.Call) -> bool:
    function = call.func
    if isinstance(function, ast.Name):
        return function.id in HELPERS
    return isinstance(function, ast.Attribute) and function.attr in METHODS and ast.unparse(function.value) in RECEIVERS


def test_every_setting_the_settings_read_is_in_the_configuration_reference() -> None:
    modules = _settings_modules()
    read = set().union(*(_read_by(ast.parse(path.read_text())) for path in modules))
    documented = DOC.read_text()

    assert len(read) > 40, f"found only {sorted(read)} in {modules}: has the way settings are read changed?"
    missing = sorted(name for name in read if f"`{name}`" not in documented)
    assert missing == [], f"docs/configuration.md does not describe {missing}"


def test_it_finds_a_setting_in_each_way_the_settings_read_one() -> None:
    source = """
A = integer("AN_INT", 1, 0, 2)
B = env.str("A_STRING", default="")
C = os.environ.get("FROM_ENVIRON", "")
D = os.environ["BY_KEY"]
os.environ["WRITTEN"] = "1"
E = env.list("A_LIST", default=[])
F = {"x": 1}.get("NOT_A_SETTING")
G = str("NOT_READ_EITHER")
"""
    assert _read_by(ast.parse(source)) == {"AN_INT", "A_STRING", "FROM_ENVIRON", "BY_KEY", "A_LIST"}
