"""Outcome categories a report is closed with (Directive 2019/1937 art. 11(2)(e): the reporter is
told the final outcome), an admin-editable list kept in the database's meta table.

Until an admin edits it, the list is the four usual outcomes, stored by their English msgid and
shown in each page's language (views pass every label through the catalogue; an admin's own label
has no entry and shows as typed). A category is a short label the admin chose, never anything a
whistleblower wrote; it is stored in the clear on the report and in its statistics record
(dropbox/statistics.py), so the yearly figures can count outcomes after the report is deleted.
"""

from __future__ import annotations

import json

from dropbox import audit
from dropbox.audit import AuditAction
from dropbox.catalogues import N_
from dropbox.channels import NotAdmin, _require_admin
from dropbox.storage import NotFound, Store

META_KEY = "outcome_categories"
DEFAULTS = (N_("No grounds"), N_("Internal measures"), N_("Referred to the police"),
            N_("Forwarded to a competent authority"))
MAX_CATEGORIES = 30
MAX_LABEL_CHARS = 80

__all__ = ["DEFAULTS", "InvalidCategories", "NotAdmin", "categories", "set_categories"]


class InvalidCategories(ValueError):
    """No category, too many, or one too long."""


async def categories(*, store: Store) -> list[str]:
    """The current list, in the admin's order (the DEFAULTS' msgids until an admin edits it)."""
    try:
        stored = json.loads(await store.get_meta(META_KEY))
    except NotFound:
        return list(DEFAULTS)
    return [str(label) for label in stored]


def parse(text: str) -> list[str]:
    """One category per line; blank lines and repeats dropped."""
    labels: list[str] = []
    for line in text.splitlines():
        label = " ".join(line.split())
        if label and label not in labels:
            labels.append(label)
    if not labels or len(labels) > MAX_CATEGORIES or any(len(label) > MAX_LABEL_CHARS for label in labels):
        raise InvalidCategories()
    return labels


async def set_categories(*, store: Store, actor_id: str, text: str) -> list[str]:
    """Replace the list (admins only; NotAdmin otherwise). Reports keep the category they were
    closed with, so renaming one changes no closed report and no statistics record."""
    await _require_admin(store, actor_id)
    labels = parse(text)
    await store.set_meta({META_KEY: json.dumps(labels).encode()})
    await audit.record(store, actor_id=actor_id, action=AuditAction.OUTCOMES_CHANGED)
    return labels
