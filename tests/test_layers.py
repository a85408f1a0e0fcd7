"""The tree shows the layers: rules about which module may import what, read from the source."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_only_storage_and_its_migrations_speak_sql() -> None:
    # storage.py (the store) and migrations.py (the schema) are together "the SQL"; nothing else
    # opens the database, so every statement can be reviewed in those two files.
    sql = {"sqlite3", "aiosqlite"}
    speaking = {str(p.relative_to(ROOT)) for p in _sources("dropbox", "keys", "onion") if _imports(p) & sql}
    assert speaking == {"dropbox/storage.py", "dropbox/migrations.py"}



def test_only_sealing_holds_cryptography_in_the_app() -> None:
    # One module owns all cryptography (PyNaCl), so every primitive and parameter is reviewed in
    # one file; onion/ is the library for tor's own key formats and keeps its own.
    crypto = {p for p in _sources("dropbox", "keys") if any(n == "nacl" or n.startswith("nacl.") for n in _imports(p))}
    assert {str(p.relative_to(ROOT)) for p in crypto} == {"dropbox/sealing.py"}

def _production() -> list[Path]:
    return [*_sources("dropbox", "keys", "onion"), ROOT / "run.py"]


def test_the_projects_own_packages_are_imported_unguarded() -> None:
    # An `except ImportError` around dropbox/, onion/ or keys/ hides a broken install as a
    # missing feature (no onion commands, no onion keys at init) instead of failing loudly.
    own = ("dropbox", "onion", "keys")
    guarded = []
    for path in _production():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Try):
                continue
            catches = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if not catches & {"ImportError", "ModuleNotFoundError"}:
                continue
            for inner in node.body:
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").split(".")[0] in own or \
                        isinstance(inner, ast.Import) and any(a.name.split(".")[0] in own for a in inner.names):
                    guarded.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert guarded == []


def test_argon2_cffi_serves_only_tests_and_the_bench() -> None:
    # It is a test (and bench) extra in pyproject.toml: the app derives keys with libsodium's
    # Argon2id (sealing.py), so an installed app must not need it.
    users = [str(p.relative_to(ROOT)) for p in _production() if any(n.split(".")[0] == "argon2" for n in _imports(p))]
    assert users == []


def test_onion_is_a_library_the_app_uses() -> None:
    # onion/ reads what it needs through onion.settings.OnionSettings; it imports nothing of the
    # app (dropbox/) or of the operator's commands (keys/), so the dependency runs one way.
    reaching = {f"{p.relative_to(ROOT)}: {name}" for p in _sources("onion") for name in _imports(p)
                if name.split(".")[0] in ("dropbox", "keys", "run")}
    assert reaching == set()


def test_the_apps_config_gives_onion_what_it_reads(tmp_path: Path) -> None:
    from dropbox.config import config_for_tests
    from onion.settings import OnionSettings

    config = config_for_tests(tmp_path)
    wanted = [name for name, value in vars(OnionSettings).items() if isinstance(value, property)]
    assert wanted and all(hasattr(config, name) for name in wanted)
