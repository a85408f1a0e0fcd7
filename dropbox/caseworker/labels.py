"""Words shown for stored values: statuses, sort orders, audit actions.

The database keeps machine values ("in_progress", "granted"); these map them to msgids, and the
views translate them into the page's language before a template sees them (see dropbox/web/i18n.py on why
templates never call `_()` on a variable).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from dropbox import casework, channels, export, outcomes
from dropbox.storage import AuditEntry
from dropbox.web.i18n import N_, translate

STATUS_LABELS: Mapping[str, str] = {
    "new": N_("New"),
    "opened": N_("Opened"),
    "in_progress": N_("In progress"),
    "closed": N_("Closed"),
}

SORT_LABELS: Mapping[str, str] = {
    "newest": N_("Newest first"),
    "oldest": N_("Oldest first"),
    "urgent": N_("Most urgent first"),
}

#: What each audit action says; `%(value)s` is filled from the entry's detail.
AUDIT_LABELS: Mapping[str, str] = {
    casework.LOGIN: N_("Signed in"),
    casework.LOGOUT: N_("Signed out"),
    casework.VIEWED: N_("Read the report"),
    casework.REPLIED: N_("Replied to the whistleblower"),
    casework.NOTE_ADDED: N_("Added an internal note"),
    casework.STATUS_CHANGED: N_("Set the status to %(value)s"),
    casework.ACKNOWLEDGED: N_("Acknowledged receipt"),
    casework.FEEDBACK_GIVEN: N_("Gave feedback"),
    casework.GRANTED: N_("Gave access to %(value)s"),
    casework.RETENTION_CHANGED: N_("Set the retention to %(value)s days"),
    casework.CLOSED: N_("Closed the report with an outcome"),
    casework.DISCLOSURE_NOTICE_SENT: N_("Sent a notice before disclosing the reporter's identity"),
    casework.NO_ACK_RECORDED: N_("Recorded that no acknowledgement is sent, with a reason"),
    casework.FEEDBACK_EXTENDED: N_("Extended the feedback deadline to 6 months, with a reason"),
    outcomes.OUTCOMES_CHANGED: N_("Changed the outcome categories"),
    casework.LEGAL_HOLD_SET: N_("Put a legal hold on the report"),
    casework.LEGAL_HOLD_LIFTED: N_("Lifted the legal hold"),
    casework.DELETED: N_("Deleted the report"),
    casework.FILE_DOWNLOADED: N_("Downloaded a file"),
    casework.ORIGINAL_OPENED: N_("Opened the original of a file, with its hidden information"),
    export.EXPORTED: N_("Exported the report"),
    export.EXPORTED_NOTES: N_("Included the internal notes in the export"),
    export.EXPORTED_ORIGINALS: N_("Included the originals of files, with their hidden information, in the export"),
    export.FORWARDED: N_("Forwarded the report, sealed to the recipient key %(value)s"),
    casework.PASSPHRASE_CHANGED: N_("Changed their passphrase"),
    casework.TOTP_ENABLED: N_("Turned on two-step login"),
    casework.TOTP_DISABLED: N_("Turned off two-step login"),
    casework.NOTICE_ADDRESS_CHANGED: N_("Changed their notice address"),
    "purged": N_("Deleted at the end of its retention period"),
    channels.CHANNEL_ADDED: N_("Added the channel %(value)s"),
    channels.CHANNEL_CHANGED: N_("Changed the channel %(value)s"),
    channels.ACCOUNT_ADDED: N_("Added the caseworker %(value)s"),
    channels.ACCOUNT_DISABLED: N_("Disabled the caseworker %(value)s"),
    channels.ACCOUNT_ENABLED: N_("Enabled the caseworker %(value)s"),
    channels.ADMIN_GRANTED: N_("Made %(value)s an admin"),
    channels.ADMIN_REVOKED: N_("Removed the admin role from %(value)s"),
    channels.TOTP_RESET: N_("Turned off two-step login for %(value)s"),
    channels.MEMBER_ADDED: N_("Added %(value)s to the channel %(channel)s"),
    channels.MEMBER_REMOVED: N_("Removed %(value)s from the channel %(channel)s"),
    channels.MEMBERSHIP_REQUESTED: N_("Asked another admin to change the membership of %(value)s in %(channel)s"),
    channels.MEMBERSHIP_APPROVED: N_("Approved the membership change of %(value)s in %(channel)s"),
    channels.MEMBERSHIP_REJECTED: N_("Rejected the membership change of %(value)s in %(channel)s"),
}

#: Actions whose detail is "<channel id>/<caseworker id>".
_MEMBERSHIP = frozenset({channels.MEMBER_ADDED, channels.MEMBER_REMOVED, channels.MEMBERSHIP_REQUESTED,
                         channels.MEMBERSHIP_APPROVED, channels.MEMBERSHIP_REJECTED})

#: Actions whose detail is a caseworker id, shown as that caseworker's name.
_NAMES_IN_DETAIL = frozenset({casework.GRANTED, channels.ACCOUNT_ADDED, channels.ACCOUNT_DISABLED,
                              channels.ACCOUNT_ENABLED, channels.ADMIN_GRANTED, channels.ADMIN_REVOKED,
                              channels.TOTP_RESET})

SYSTEM = N_("The system")
UNKNOWN = N_("(unknown)")


def status(request: web.Request, value: str) -> str:
    return translate(request, STATUS_LABELS.get(value, value))


def statuses(request: web.Request, values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(v, status(request, v)) for v in values]


def sorts(request: web.Request) -> list[tuple[str, str]]:
    return [(k, translate(request, v)) for k, v in SORT_LABELS.items()]


def audit_action(request: web.Request, entry: AuditEntry, names: Mapping[str, str]) -> str:
    """One audit entry as a sentence in the page's language."""
    label = AUDIT_LABELS.get(entry.action)
    if label is None:
        return entry.action
    value = entry.detail
    if entry.action in _MEMBERSHIP:
        channel, _, caseworker = value.partition("/")
        return translate(request, label, value=names.get(caseworker, translate(request, UNKNOWN)), channel=channel)
    if entry.action == casework.STATUS_CHANGED:
        value = status(request, value)
    elif entry.action in _NAMES_IN_DETAIL:
        value = names.get(value, translate(request, UNKNOWN))
    return translate(request, label, value=value) if "%(value)s" in label else translate(request, label)


def actor(request: web.Request, entry: AuditEntry, names: Mapping[str, str]) -> str:
    if entry.actor is None:
        return translate(request, SYSTEM)
    return names.get(entry.actor, translate(request, UNKNOWN))
