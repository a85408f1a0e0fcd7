"""The audit log's vocabulary and the one way to write to it.

Every entry is who (a caseworker id, or None for the system), what (an `AuditAction`), which
report, to the hour (ids.this_hour). Never content, file names or addresses: `detail` holds only
values the calling module chose (a status, a number of days, a colleague's id, or
"<channel id>/<caseworker id>" for membership changes).

The actions are stored as their string values, which the audit pages translate
(dropbox/caseworker/labels.py has a label for each); the values never change, so old entries keep
reading the same. tests/test_audit.py checks that no module writes an action that is not one of
these, and that every one of them has a label.
"""

from __future__ import annotations

from enum import StrEnum, unique

from dropbox.ids import this_hour
from dropbox.storage import Store


@unique
class AuditAction(StrEnum):
    """Every action the audit log records, by the module that records it."""

    # a caseworker's own account (account_actions.py)
    LOGIN = "login"
    LOGOUT = "logout"
    PASSPHRASE_CHANGED = "passphrase_changed"  # noqa: S105 - an audit action, not a secret
    TOTP_ENABLED = "totp_enabled"
    TOTP_DISABLED = "totp_disabled"
    NOTICE_ADDRESS_CHANGED = "notice_address_changed"
    # work on a report (casework.py)
    VIEWED = "viewed"
    REPLIED = "replied"
    NOTE_ADDED = "note_added"
    STATUS_CHANGED = "status_changed"
    ACKNOWLEDGED = "acknowledged"
    FEEDBACK_GIVEN = "feedback_given"
    GRANTED = "granted"
    RETENTION_CHANGED = "retention_changed"
    CLOSED = "closed"
    DISCLOSURE_NOTICE_SENT = "disclosure_notice_sent"
    NO_ACK_RECORDED = "no_acknowledgement"
    FEEDBACK_EXTENDED = "feedback_extended"
    LEGAL_HOLD_SET = "legal_hold_set"
    LEGAL_HOLD_LIFTED = "legal_hold_lifted"
    DELETED = "deleted"
    FILE_DOWNLOADED = "file_downloaded"
    ORIGINAL_OPENED = "original_opened"
    # exports (export.py)
    EXPORTED = "exported"
    FORWARDED = "forwarded"
    EXPORTED_NOTES = "exported_notes"
    EXPORTED_ORIGINALS = "exported_originals"
    # the system (retention.py)
    PURGED = "purged"
    # the operator (keys/commands.py)
    SIGNING_KEY_ROTATED = "signing_key_rotated"
    # oral reports (oral.py)
    ORAL_REGISTERED = "oral_registered"
    MINUTES_PUBLISHED = "minutes_published"
    MINUTES_APPROVED = "minutes_approved"
    # the admin role (channels.py, outcomes.py)
    OUTCOMES_CHANGED = "outcomes_changed"
    CHANNEL_ADDED = "channel_added"
    CHANNEL_CHANGED = "channel_changed"
    ACCOUNT_ADDED = "caseworker_added"
    ACCOUNT_DISABLED = "caseworker_disabled"
    ACCOUNT_ENABLED = "caseworker_enabled"
    ADMIN_GRANTED = "admin_granted"
    ADMIN_REVOKED = "admin_revoked"
    TOTP_RESET = "totp_reset"
    # channel membership: detail is "<channel id>/<caseworker id>"
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    MEMBERSHIP_REQUESTED = "membership_requested"
    MEMBERSHIP_APPROVED = "membership_approved"
    MEMBERSHIP_REJECTED = "membership_rejected"


#: Actions whose detail is "<channel id>/<caseworker id>".
MEMBERSHIP_ACTIONS = frozenset({AuditAction.MEMBER_ADDED, AuditAction.MEMBER_REMOVED,
                                AuditAction.MEMBERSHIP_REQUESTED, AuditAction.MEMBERSHIP_APPROVED,
                                AuditAction.MEMBERSHIP_REJECTED})


def checked(action: AuditAction) -> AuditAction:
    """`action`, or TypeError if it is a plain string: an action outside the enum would have no
    label on the audit page and no place in the documented vocabulary."""
    if not isinstance(action, AuditAction):
        raise TypeError(f"audit action must be an AuditAction, not {action!r}")
    return action


async def record(store: Store, *, actor_id: str | None, action: AuditAction, report_id: str | None = None,
                 detail: str = "") -> None:
    """One entry, stamped with the current hour."""
    await store.audit(hour=this_hour(), actor=actor_id, action=checked(action), report_id=report_id, detail=detail)


async def record_once(store: Store, *, actor_id: str, action: AuditAction, report_id: str) -> None:
    """One entry, unless the same actor already has it for this report this hour (page views)."""
    await store.audit_once(hour=this_hour(), actor=actor_id, action=checked(action), report_id=report_id)
