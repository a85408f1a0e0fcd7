"""Words shown for stored values: statuses, sort orders, audit actions.

The database keeps machine values ("in_progress", "granted"); these map them to msgids, and the
views translate them into the page's language before a template sees them (see dropbox/web/i18n.py on why
templates never call `_()` on a variable).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from dropbox import casework
from dropbox.audit import MEMBERSHIP_ACTIONS, AuditAction
from dropbox.reports import Status
from dropbox.web.i18n import N_, translate

STATUS_LABELS: Mapping[str, str] = {
    Status.NEW: N_("New"),
    Status.OPENED: N_("Opened"),
    Status.IN_PROGRESS: N_("In progress"),
    Status.CLOSED: N_("Closed"),
}

#: How an oral report was made (oral.MEDIA).
MEDIUM_LABELS: Mapping[str, str] = {
    "phone": N_("Phone call"),
    "voice_message": N_("Voice message"),
    "meeting": N_("Meeting in person"),
}

SORT_LABELS: Mapping[str, str] = {
    "newest": N_("Newest first"),
    "oldest": N_("Oldest first"),
    "urgent": N_("Most urgent first"),
}

#: What each audit action says; `%(value)s` is filled from the entry's detail.
AUDIT_LABELS: Mapping[str, str] = {
    AuditAction.LOGIN: N_("Signed in"),
    AuditAction.LOGOUT: N_("Signed out"),
    AuditAction.VIEWED: N_("Read the report"),
    AuditAction.REPLIED: N_("Replied to the whistleblower"),
    AuditAction.NOTE_ADDED: N_("Added an internal note"),
    AuditAction.STATUS_CHANGED: N_("Set the status to %(value)s"),
    AuditAction.ACKNOWLEDGED: N_("Acknowledged receipt"),
    AuditAction.FEEDBACK_GIVEN: N_("Gave feedback"),
    AuditAction.GRANTED: N_("Gave access to %(value)s"),
    AuditAction.RETENTION_CHANGED: N_("Set the retention to %(value)s days"),
    AuditAction.CLOSED: N_("Closed the report with an outcome"),
    AuditAction.DISCLOSURE_NOTICE_SENT: N_("Sent a notice before disclosing the reporter's identity"),
    AuditAction.NO_ACK_RECORDED: N_("Recorded that no acknowledgement is sent, with a reason"),
    AuditAction.FEEDBACK_EXTENDED: N_("Extended the feedback deadline to 6 months, with a reason"),
    AuditAction.OUTCOMES_CHANGED: N_("Changed the outcome categories"),
    AuditAction.LEGAL_HOLD_SET: N_("Put a legal hold on the report"),
    AuditAction.LEGAL_HOLD_LIFTED: N_("Lifted the legal hold"),
    AuditAction.DELETED: N_("Deleted the report"),
    AuditAction.FILE_DOWNLOADED: N_("Downloaded a file"),
    AuditAction.ORIGINAL_OPENED: N_("Opened the original of a file, with its hidden information"),
    AuditAction.EXPORTED: N_("Exported the report"),
    AuditAction.EXPORTED_NOTES: N_("Included the internal notes in the export"),
    AuditAction.EXPORTED_ORIGINALS: N_("Included the originals of files, with their hidden information, in the export"),
    AuditAction.FORWARDED: N_("Forwarded the report, sealed to the recipient key %(value)s"),
    AuditAction.PASSPHRASE_CHANGED: N_("Changed their passphrase"),
    AuditAction.TOTP_ENABLED: N_("Turned on two-step login"),
    AuditAction.TOTP_DISABLED: N_("Turned off two-step login"),
    AuditAction.NOTICE_ADDRESS_CHANGED: N_("Changed their notice address"),
    AuditAction.PURGED: N_("Deleted at the end of its retention period"),
    AuditAction.ORAL_REGISTERED: N_("Registered an oral report (%(value)s)"),
    AuditAction.MINUTES_PUBLISHED: N_("Published version %(value)s of the minutes"),
    AuditAction.MINUTES_APPROVED: N_("Approved version %(version)s of the minutes, on %(day)s"),
    AuditAction.CHANNEL_ADDED: N_("Added the channel %(value)s"),
    AuditAction.CHANNEL_CHANGED: N_("Changed the channel %(value)s"),
    AuditAction.ACCOUNT_ADDED: N_("Added the caseworker %(value)s"),
    AuditAction.ACCOUNT_DISABLED: N_("Disabled the caseworker %(value)s"),
    AuditAction.ACCOUNT_ENABLED: N_("Enabled the caseworker %(value)s"),
    AuditAction.ADMIN_GRANTED: N_("Made %(value)s an admin"),
    AuditAction.ADMIN_REVOKED: N_("Removed the admin role from %(value)s"),
    AuditAction.TOTP_RESET: N_("Turned off two-step login for %(value)s"),
    AuditAction.MEMBER_ADDED: N_("Added %(value)s to the channel %(channel)s"),
    AuditAction.MEMBER_REMOVED: N_("Removed %(value)s from the channel %(channel)s"),
    AuditAction.MEMBERSHIP_REQUESTED: N_("Asked another admin to change the membership of %(value)s in %(channel)s"),
    AuditAction.MEMBERSHIP_APPROVED: N_("Approved the membership change of %(value)s in %(channel)s"),
    AuditAction.MEMBERSHIP_REJECTED: N_("Rejected the membership change of %(value)s in %(channel)s"),
    AuditAction.SIGNING_KEY_ROTATED: N_("Replaced the install's signing key; the new fingerprint is %(value)s"),
}

#: Actions whose detail is a caseworker id, shown as that caseworker's name.
_NAMES_IN_DETAIL = frozenset({AuditAction.GRANTED, AuditAction.ACCOUNT_ADDED, AuditAction.ACCOUNT_DISABLED,
                              AuditAction.ACCOUNT_ENABLED, AuditAction.ADMIN_GRANTED, AuditAction.ADMIN_REVOKED,
                              AuditAction.TOTP_RESET})

SYSTEM = N_("The system")
REPORTER = N_("The reporter")
UNKNOWN = N_("(unknown)")


def status(request: web.Request, value: str) -> str:
    return translate(request, STATUS_LABELS.get(value, value))


def statuses(request: web.Request, values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(v, status(request, v)) for v in values]


def sorts(request: web.Request) -> list[tuple[str, str]]:
    return [(k, translate(request, v)) for k, v in SORT_LABELS.items()]


def audit_action(request: web.Request, entry: casework.AuditEntry, names: Mapping[str, str]) -> str:
    """One audit entry as a sentence in the page's language."""
    label = AUDIT_LABELS.get(entry.action)
    if label is None:
        return entry.action
    value = entry.detail
    if entry.action in MEMBERSHIP_ACTIONS:
        channel, _, caseworker = value.partition("/")
        return translate(request, label, value=names.get(caseworker, translate(request, UNKNOWN)), channel=channel)
    if entry.action == AuditAction.MINUTES_APPROVED:
        version, _, day = value.partition(" ")
        return translate(request, label, version=version, day=day)
    if entry.action == AuditAction.STATUS_CHANGED:
        value = status(request, value)
    elif entry.action == AuditAction.ORAL_REGISTERED:
        value = translate(request, MEDIUM_LABELS.get(value, value))
    elif entry.action in _NAMES_IN_DETAIL:
        value = names.get(value, translate(request, UNKNOWN))
    return translate(request, label, value=value) if "%(value)s" in label else translate(request, label)


def actor(request: web.Request, entry: casework.AuditEntry, names: Mapping[str, str]) -> str:
    if entry.actor is None:
        return translate(request, REPORTER if entry.action == AuditAction.MINUTES_APPROVED else SYSTEM)
    return names.get(entry.actor, translate(request, UNKNOWN))
