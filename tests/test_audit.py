"""The audit log's vocabulary (dropbox/audit.py): one enum, one writer, a label for every action."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dropbox.storage import Store

DROPBOX = Path(__file__).resolve().parent.parent / "dropbox"
#: Store's methods that insert audit rows.
_AUDIT_WRITES = {"audit", "audit_once"}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(DROPBOX.parent)), ast.parse(path.read_text(), filename=str(path)))
            for path in sorted(DROPBOX.rglob("*.py"))]


def _calls(tree: ast.Module, method: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method]


def test_only_the_audit_module_writes_the_audit_log() -> None:
    # Given every module of the app
    # When one calls Store.audit or Store.audit_once itself
    # Then it is named: writes go through audit.record, which accepts only an AuditAction
    offenders = [f"{name}:{call.lineno}" for name, tree in _modules() if name != "dropbox/audit.py"
                 for method in _AUDIT_WRITES for call in _calls(tree, method)]
    assert offenders == []


def test_membership_changes_pass_a_checked_action() -> None:
    # change_membership writes its audit row in the same transaction as the change, so it cannot
    # go through audit.record; its action must still pass audit.checked.
    calls = [(name, call) for name, tree in _modules() if name != "dropbox/storage.py"
             for call in _calls(tree, "change_membership")]
    assert calls
    for name, call in calls:
        action = next(k.value for k in call.keywords if k.arg == "action")
        assert isinstance(action, ast.Call) and ast.unparse(action.func) == "audit.checked", f"{name}:{call.lineno}"


def test_every_action_has_a_label_and_every_label_an_action() -> None:
    from dropbox.audit import AuditAction
    from dropbox.caseworker.labels import AUDIT_LABELS

    assert set(AUDIT_LABELS) == set(AuditAction)


async def test_a_plain_string_is_refused(store: Store) -> None:
    from dropbox import audit

    with pytest.raises(TypeError):
        await audit.record(store, actor_id=None, action="purged")  # type: ignore[arg-type]
    await audit.record(store, actor_id=None, action=audit.AuditAction.PURGED, report_id="r1")
    assert [(e.action, e.report_id) for e in await store.audit_log()] == [("purged", "r1")]
