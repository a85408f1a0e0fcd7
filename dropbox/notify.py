"""Optional e-mail notices to caseworkers: "something new arrived", and nothing more.

Off unless `Config.smtp_host` is set. A notice carries no report id, channel, count, name, text or
link (not even the onion address): the mail passes servers the drop box does not control. It
tells a caseworker only that it is worth signing in.

Notices are not sent the moment something arrives. The caseworker app checks once per interval
(an hour by default) what is waiting for each caseworker, a new report or an unread message from
a whistleblower, and writes to those with something they were not told about yet. So the mail
logs learn arrival times to the hour at best, which is also the precision of the audit log.
What was notified is remembered in memory only; after a restart, whoever has something waiting
gets one notice.
"""

from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage

import aiosmtplib

from dropbox.config import Config
from dropbox.i18n import LOCALE_DIR, N_, load_translations
from dropbox.storage import Store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 3600.0
SEND_TIMEOUT_SECONDS = 30.0

SUBJECT = N_("New activity")
BODY = N_(
    "There is something new for you. Sign in to the caseworker site to see it.\n\n"
    "This message contains no details on purpose."
)


class Notifier:
    """Checks what is waiting and mails each caseworker with news. One per caseworker app."""

    def __init__(self, *, config: Config, store: Store, interval_seconds: float = DEFAULT_INTERVAL_SECONDS) -> None:
        if not config.smtp_host:
            raise ValueError("notices need Config.smtp_host")
        self._config = config
        self._store = store
        self._interval = interval_seconds
        translations = load_translations(LOCALE_DIR, config.default_language)
        self._subject = translations.gettext(SUBJECT)
        self._body = translations.gettext(BODY)
        #: caseworker id -> the waiting items they were last told about (or knew of).
        self._told: dict[str, frozenset[str]] = {}

    async def check_once(self) -> int:
        """Send the notices due now; returns how many went out."""
        waiting: dict[str, tuple[str, set[str]]] = {}
        for caseworker_id, address, token in await self._store.notice_tokens():
            waiting.setdefault(caseworker_id, (address, set()))[1].add(token)
        told: dict[str, frozenset[str]] = {}
        sent = 0
        for caseworker_id, (address, tokens) in waiting.items():
            previous = self._told.get(caseworker_id, frozenset())
            if tokens <= previous:
                told[caseworker_id] = frozenset(tokens)
                continue
            try:
                await self._send(address)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
                # No address in the log; the next round tries again.
                log.warning("a notice could not be sent: %s", type(e).__name__)
                told[caseworker_id] = previous
                continue
            told[caseworker_id] = frozenset(tokens)
            sent += 1
        self._told = told
        if sent:
            log.info("sent %d notice(s)", sent)
        return sent

    def message(self, address: str) -> EmailMessage:
        """The whole notice: fixed subject and text, one recipient (colleagues never see each other)."""
        message = EmailMessage()
        message["From"] = self._config.smtp_sender
        message["To"] = address
        message["Subject"] = self._subject
        message.set_content(self._body)
        return message

    async def _send(self, address: str) -> None:
        await aiosmtplib.send(
            self.message(address), hostname=self._config.smtp_host, port=self._config.smtp_port,
            # Our own host name would otherwise go out in EHLO and end up in the Received: header.
            local_hostname="localhost", timeout=SEND_TIMEOUT_SECONDS,
        )

    async def run(self) -> None:
        """Check, then wait an interval, until cancelled."""
        while True:
            try:
                await self.check_once()
            except Exception as e:  # a failing round must not end the notices for good
                log.error("notice round failed: %s", type(e).__name__)
            await asyncio.sleep(self._interval)
