"""Optional e-mail notices to caseworkers: "something new arrived", and nothing more.

Off unless `Config.smtp_host` is set. A notice carries no report id, channel, count, name, text or
link (not even the onion address): the mail passes servers the drop box does not control. It
tells a caseworker only that it is worth signing in.

Notices are not sent the moment something arrives. The caseworker app checks once per interval
(an hour by default) what is waiting for each caseworker, a new report or an unread message from
a whistleblower, and writes to those with something they were not told about yet. So the mail
logs learn arrival times to the hour at best, which is also the precision of the audit log.

What was notified is remembered across restarts (so a restart does not mail everyone again), in
the database's meta table, content-free: per caseworker id, short hashes of the tokens
("report:<id>", "message:<id>", "deletion:<id>": a closed report deleted within 14 days, see
retention.py) they were told about; no address, time, count or text.

Transport: `smtp_security` "starttls" or "tls" (implicit) with the server's certificate checked
(against `smtp_ca_file` or the system's CAs); a login (`smtp_user`) reads its password from
`smtp_password_file` at each send, so the password is in no settings file and a changed password
needs no restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from dropbox.catalogues import LOCALE_DIR, N_, load_translations
from dropbox.config import Config
from dropbox.ids import today
from dropbox.retention import deletion_cut
from dropbox.storage import NotFound, Store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 3600.0
SEND_TIMEOUT_SECONDS = 30.0
#: meta key of what was notified (content-free: hashed tokens per caseworker id).
TOLD_META_KEY = "notices_told"

SUBJECT = N_("New activity")
#: The same words whatever is waiting (a new report, an unread message, a closed report due for
#: deletion): which of them it is would already say more than that it is worth signing in.
BODY = N_(
    "There is something new for you, or something that needs your attention. Sign in to the caseworker "
    "site to see it.\n\n"
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
        #: caseworker id -> hashes of the waiting items they were last told about (or knew of);
        #: None until read back from the database on the first round.
        self._told: dict[str, frozenset[str]] | None = None

    async def check_once(self, *, on: dt.date | None = None) -> int:
        """Send the notices due on day `on` (default today); returns how many went out."""
        if self._told is None:
            self._told = await _load_told(self._store)
        waiting: dict[str, tuple[str, set[str]]] = {}
        for caseworker_id, address, token in await self._store.notice_tokens(
                deletion_cut=deletion_cut(on or today())):
            waiting.setdefault(caseworker_id, (address, set()))[1].add(_token_hash(token))
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
        if told != self._told:
            await self._store.set_meta({TOLD_META_KEY: json.dumps(
                {k: sorted(v) for k, v in sorted(told.items())}).encode()})
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
        await aiosmtplib.send(self.message(address), **smtp_options(self._config))

    async def run(self) -> None:
        """Check, then wait an interval, until cancelled."""
        while True:
            try:
                await self.check_once()
            except Exception as e:  # a failing round must not end the notices for good
                log.error("notice round failed: %s", type(e).__name__)
            await asyncio.sleep(self._interval)


def smtp_options(config: Config) -> dict[str, Any]:
    """aiosmtplib's connection options for `config`: TLS mode, certificate check, login."""
    options: dict[str, Any] = {
        "hostname": config.smtp_host, "port": config.smtp_port, "timeout": SEND_TIMEOUT_SECONDS,
        # Our own host name would otherwise go out in EHLO and end up in the Received: header.
        "local_hostname": "localhost",
        "use_tls": config.smtp_security == "tls",
        # "none" must not upgrade opportunistically either: what the file says is what happens.
        "start_tls": config.smtp_security == "starttls",
        "validate_certs": True,
    }
    if config.smtp_ca_file is not None:
        options["cert_bundle"] = str(config.smtp_ca_file)
    if config.smtp_user:
        if config.smtp_password_file is None:
            raise ValueError("smtp_user needs smtp_password_file")
        options["username"] = config.smtp_user
        options["password"] = (config.smtp_password_file.read_text(encoding="utf-8").splitlines() or [""])[0]
    return options


def _token_hash(token: str) -> str:
    """What is remembered of a waiting item: enough to tell it from others, nothing to read."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


async def _load_told(store: Store) -> dict[str, frozenset[str]]:
    try:
        raw = json.loads(await store.get_meta(TOLD_META_KEY))
    except NotFound:
        return {}
    return {str(k): frozenset(map(str, v)) for k, v in raw.items()}
