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
