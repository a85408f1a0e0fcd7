"""The tests' own layout: shared helpers live in tests/support/, never in another test file.

A test file that imports from another test file makes that file's private helpers a contract no
one can see, and runs its module-level code (fixtures, parametrisations) a second time.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in the source, at any depth (function-local ones too);
    `from tests import test_x` and relative imports count as importing tests.test_x."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = "tests" if node.level else ""
            module = ".".join(part for part in (package, node.module or "") if part)
            if module == "tests":  # from tests import test_x / from . import test_x
                found += [(node.lineno, f"tests.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def imports_of_test_files(source: str) -> list[str]:
    """Imports of a test module (tests/test_*.py) or of conftest (its fixtures) found in `source`."""
    return [f"line {line}: {module}" for line, module in imported_modules(source)
            if module.startswith("tests.") and module.split(".")[1].startswith(("test_", "conftest"))]


def test_the_check_sees_each_way_of_importing_a_test_file() -> None:
    assert imports_of_test_files("from tests.test_submissions import _submit") == ["line 1: tests.test_submissions"]
    assert imports_of_test_files("import tests.test_onion_tor") == ["line 1: tests.test_onion_tor"]
    assert imports_of_test_files("from tests import test_migrate") == ["line 1: tests.test_migrate"]
    assert imports_of_test_files("def f():\n    from tests.conftest import PASSPHRASES\n") == ["line 2: tests.conftest"]
    assert imports_of_test_files("from .test_cleaning import LIMITS") == ["line 1: tests.test_cleaning"]
    assert imports_of_test_files("from tests.support.forms import csrf_in\nimport test_helpers_elsewhere") == []


def test_no_file_under_tests_imports_a_test_file_or_conftest() -> None:
    offenders = {str(path.relative_to(TESTS)): found for path in sorted(TESTS.rglob("*.py"))
                 if (found := imports_of_test_files(path.read_text(encoding="utf-8")))}
    assert offenders == {}, "move what they share into tests/support/"


def test_helpers_live_in_tests_support() -> None:
    """At the top of tests/ only test files, conftest and the package marker: a new helper module
    belongs in tests/support/, where the next test finds it."""
    stray = sorted(p.name for p in TESTS.glob("*.py")
                   if not p.name.startswith("test_") and p.name not in ("conftest.py", "__init__.py"))
    assert stray == []
