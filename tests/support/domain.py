"""Reports, replies and channels made through the domain code, as the apps make them.

For tests that look at them from the other side (a caseworker reading a report, a whistleblower
reading a reply) without driving the first side's web forms. Everything is sealed and stored by
the same functions the apps call; nothing is written to the database by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from dropbox.blobs import BlobStore
from dropbox.config import Config
from dropbox.ids import new_id, today
from dropbox.install import Install
from dropbox.kdf_pool import KdfPool
from dropbox.reports import ReportBody, message_sealer, sealed_file_rows
from dropbox.sealing import ReportKeys
from dropbox.services import Services
from dropbox.storage import Channel, Message, Store
from dropbox.submissions import open_mailbox, submit_report


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """`data` as an upload arrives: in pieces of `size` bytes."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def hand_in(store: Store, kdf: KdfPool, install: Install, blobs: BlobStore, config: Config, *,
                  text: str = "report text", files: Mapping[str, bytes] | None = None,
                  answers: Mapping[str, str] | None = None, contact: str = "",
                  channel_id: str = "default") -> str:
    """A report handed in as the whistleblower app does it (sealed to the channel's members);
    returns the receipt."""
    staged = blobs.stage(byte_budget=config.max_submission_bytes)
    for name, data in (files or {}).items():
        await staged.add(name, chunks_of(data), max_file_bytes=config.max_file_bytes)
    return await submit_report(store=store, kdf=kdf, install=install, channel_id=channel_id,
                               body=ReportBody(text=text, answers=dict(answers or {}), contact=contact),
                               keys=ReportKeys.generate(), staged=staged)


@dataclass(frozen=True)
class Submitted:
    receipt: str
    report_id: str


async def submit(services: Services, *, text: str = "what happened", files: dict[str, bytes] | None = None,
                 channel_id: str = "default", answers: dict[str, str] | None = None,
                 contact: str = "") -> Submitted:
    """`hand_in` over an install's Services; also opens the mailbox once to learn the report's id."""
    receipt = await hand_in(services.store, services.public_kdf, services.install, services.blobs, services.config,
                            text=text, files=files, answers=answers, contact=contact, channel_id=channel_id)
    access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                receipt_text=receipt)
    return Submitted(receipt=receipt, report_id=access.report_id)


async def caseworker_reply(services: Services, receipt: str, text: str,
                           files: Mapping[str, bytes] | None = None) -> str:
    """A caseworker's message with files, stored as the caseworker side stores it."""
    access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                receipt_text=receipt)
    staged = services.blobs.stage(byte_budget=services.config.max_submission_bytes)
    for name, data in (files or {}).items():
        await staged.add(name, chunks_of(data), max_file_bytes=services.config.max_file_bytes)
    await staged.settle()
    message_id = new_id()
    day = today().isoformat()
    message = Message(id=message_id, report_id=access.report_id, seq=0, author="caseworker", caseworker_id=None,
                      sealed_body=b"", sent_day=day, read=False)
    rows = sealed_file_rows(staged, report_key=access.report_key, report_id=access.report_id, message_id=message_id)
    await services.store.add_message(message, files=rows, activity={"last_activity_day": day}, seal_body=message_sealer(
        text, report_key=access.report_key, report_id=access.report_id, message_id=message_id, author="caseworker"))
    staged.promote()
    return message_id


async def add_channel_with_question(store: Store) -> None:
    """A second channel, "hr", whose form asks a required question; alice is its member.

    With two channels the whistleblower first chooses one (the channel-choice page).
    """
    await store.add_channel(Channel(
        id="hr", name="HR", description="Harassment and working conditions",
        questions='[{"id": "where", "label": {"en": "Where?", "da": "Hvor?", "sv": "Var?"}, "required": true}]',
        retention_days=30, is_default=False))
    alice = await store.caseworker_by_name("alice")
    await store.set_channel_member(channel_id="hr", caseworker_id=alice.id, member=True)


async def only_for(services: Services, *names: str, channel_id: str = "unit") -> str:
    """A channel whose only members are `names`, so its reports are granted to them alone."""
    members = [await services.store.caseworker_by_name(n) for n in names]
    await services.store.add_channel(Channel(id=channel_id, name=f"Unit {channel_id}", description="",
                                             questions="[]", retention_days=30, is_default=False))
    for cw in members:
        await services.store.set_channel_member(channel_id=channel_id, caseworker_id=cw.id, member=True)
    return channel_id
