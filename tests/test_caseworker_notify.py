"""E-mail notices against a real SMTP server (aiosmtpd) on 127.0.0.1, started by the test."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword

from dropbox.config import Config
from dropbox.notify import Notifier
from dropbox.services import Services
from dropbox.submissions import open_mailbox, post_whistleblower_message
from tests.support.caseworker_site import serve_site
from tests.support.domain import submit
from tests.support.installs import STAFF, new_install

CANARY = "CANARY-notice-51ab"


@dataclass
class Inbox:
    """What the SMTP server received; `arrived` is set on every message."""

    envelopes: list[Envelope] = field(default_factory=list)
    ehlo: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_EHLO(self, server: SMTP, session: Any, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        self.ehlo.append(hostname)
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        self.arrived.set()
        return "250 OK"

    def messages(self) -> list[email.message.Message]:
        return [email.message_from_bytes(e.content) for e in self.envelopes]  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def smtp_server() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(inbox, loop=loop, hostname="test.invalid"), "127.0.0.1", 0)
    try:
        yield inbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _setup(tmp_path: Path, port: int) -> Config:
    config = await new_install(tmp_path / "data", STAFF, smtp_host="127.0.0.1", smtp_port=port,
                               smtp_sender="dropbox@example.org")
    async with Services.open(config) as services:
        for name in ("alice", "bob"):
            cw = await services.store.caseworker_by_name(name)
            await services.store.update_caseworker(cw.id, email=f"{name}@example.org")
    return config


async def test_a_notice_says_only_that_something_arrived(tmp_path: Path) -> None:
    async with smtp_server() as (inbox, port):
        config = await _setup(tmp_path, port)
        async with Services.open(config) as services:
            report = await submit(services, text=CANARY, files={f"{CANARY}.pdf": b"%PDF"})
            notifier = Notifier(config=config, store=services.store)

            assert await notifier.check_once() == 2  # alice and bob; carol has no address

            recipients = sorted(r for e in inbox.envelopes for r in e.rcpt_tos)
            assert recipients == ["alice@example.org", "bob@example.org"]
            assert all(len(e.rcpt_tos) == 1 for e in inbox.envelopes)  # colleagues never see each other
            for envelope, message in zip(inbox.envelopes, inbox.messages(), strict=True):
                raw = envelope.content.decode()  # type: ignore[union-attr]
                assert CANARY not in raw and report.report_id not in raw and report.report_id[:8] not in raw
                assert "default" not in raw.lower().replace("dropbox@example.org", "")
                assert "Message-ID" not in raw
                assert message["Subject"] == "New activity"
                assert message["From"] == "dropbox@example.org"
            assert inbox.ehlo == ["localhost", "localhost"]  # our host name is not given away

            # Nothing new: no second notice. A whistleblower's message is news again.
            assert await notifier.check_once() == 0
            access = await open_mailbox(store=services.store, kdf=services.public_kdf, install=services.install,
                                        receipt_text=report.receipt)
            await post_whistleblower_message(store=services.store, access=access, text=CANARY,
                                             staged=services.blobs.stage(byte_budget=100))
            assert await notifier.check_once() == 2
            assert CANARY not in "".join(e.content.decode() for e in inbox.envelopes)  # type: ignore[union-attr]


async def test_notices_follow_the_default_language_and_skip_disabled_accounts(tmp_path: Path) -> None:
    async with smtp_server() as (inbox, port):
        config = await _setup(tmp_path, port)
        config = config.replace(default_language="da")
        async with Services.open(config) as services:
            await submit(services)
            bob = await services.store.caseworker_by_name("bob")
            await services.store.update_caseworker(bob.id, disabled=1)
            assert await Notifier(config=config, store=services.store).check_once() == 1
            (message,) = inbox.messages()
            assert message["To"] == "alice@example.org"
            assert message["Subject"] == "Ny aktivitet"


async def test_an_unreachable_server_is_retried_next_round(tmp_path: Path) -> None:
    async with smtp_server() as (_inbox, port):
        config = await _setup(tmp_path, port)
    # The server is gone now: nothing sent, nothing remembered as told.
    async with Services.open(config) as services:
        await submit(services)
        notifier = Notifier(config=config, store=services.store)
        assert await notifier.check_once() == 0
        async with smtp_server() as (inbox, new_port):
            notifier._config = config.replace(smtp_port=new_port)
            assert await notifier.check_once() == 2
            assert len(inbox.envelopes) == 2


async def test_the_app_sends_notices_while_it_runs_only_when_configured(tmp_path: Path) -> None:
    async with smtp_server() as (inbox, port):
        config = await _setup(tmp_path, port)
        async with Services.open(config) as services:
            await submit(services)
        async with serve_site(config):
            await asyncio.wait_for(inbox.arrived.wait(), timeout=30)  # the first round runs at start
        assert len(inbox.envelopes) >= 1


def test_notifier_needs_an_smtp_host(tmp_path: Path) -> None:
    from dropbox.config import config_for_tests

    with pytest.raises(ValueError):
        Notifier(config=config_for_tests(tmp_path), store=None)  # type: ignore[arg-type]


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by openssl, so the client's check is real, not switched off."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@contextlib.asynccontextmanager
async def starttls_login_server(tmp_path: Path, *, user: str, password: str) -> AsyncIterator[tuple[Inbox, int]]:
    """aiosmtpd that offers STARTTLS, refuses mail before it, and refuses AUTH without TLS or a wrong login."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()

    def authenticate(server: SMTP, session: Any, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == user.encode() and data.password == password.encode()
        # handled=False: aiosmtpd itself answers a refusal with 535, as a real server does (with its
        # default, handled=True, it answers nothing and the client waits out its 30 s timeout)
        return AuthResult(success=ok, handled=False)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(inbox, loop=loop, hostname="test.invalid", tls_context=context, require_starttls=True,
                     auth_require_tls=True, auth_required=True, authenticator=authenticate),
        "127.0.0.1", 0)
    try:
        yield inbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_notices_go_through_starttls_with_a_login_from_a_password_file(tmp_path: Path) -> None:
    # Given a mail server that demands STARTTLS and a login, and a password kept in a file
    password_file = tmp_path / "smtp-password"
    password_file.write_text("s3cret pass\n")
    async with starttls_login_server(tmp_path, user="dropbox", password="s3cret pass") as (inbox, port):
        config = await _setup(tmp_path, port)
        config = config.replace(smtp_security="starttls", smtp_user="dropbox", smtp_password_file=password_file,
                                smtp_ca_file=tmp_path / "cert.pem")
        async with Services.open(config) as services:
            await submit(services)
            # When a round runs, the notices arrive
            assert await Notifier(config=config, store=services.store).check_once() == 2
            assert len(inbox.envelopes) == 2
            # And with a wrong password nothing is sent (and nothing is remembered as told)
            password_file.write_text("wrong\n")
            bob = await services.store.caseworker_by_name("bob")
            await services.store.update_caseworker(bob.id, email="bob2@example.org")
            await submit(services)
            assert await Notifier(config=config, store=services.store).check_once() == 0


async def test_without_starttls_the_server_refuses_and_nothing_is_sent_in_the_clear(tmp_path: Path) -> None:
    password_file = tmp_path / "smtp-password"
    password_file.write_text("s3cret pass\n")
    async with starttls_login_server(tmp_path, user="dropbox", password="s3cret pass") as (inbox, port):
        config = (await _setup(tmp_path, port)).replace(smtp_security="none")
        async with Services.open(config) as services:
            await submit(services)
            assert await Notifier(config=config, store=services.store).check_once() == 0
            assert inbox.envelopes == []


async def test_a_restart_does_not_send_the_notice_again(tmp_path: Path) -> None:
    async with smtp_server() as (inbox, port):
        config = await _setup(tmp_path, port)
        async with Services.open(config) as services:
            report = await submit(services)
            assert await Notifier(config=config, store=services.store).check_once() == 2
        # When the server restarts (a new process: a new Notifier over the same database)
        async with Services.open(config) as services:
            assert await Notifier(config=config, store=services.store).check_once() == 0
            # What is kept names no address and no report
            told = await services.store.get_meta("notices_told")
            assert b"@" not in told and report.report_id.encode() not in told
            # and news after the restart is still news
            await submit(services)
            assert await Notifier(config=config, store=services.store).check_once() == 2
        assert len(inbox.envelopes) == 4


async def test_a_report_due_for_deletion_is_notified_with_the_same_generic_words(tmp_path: Path) -> None:
    # Given a closed report due for deletion within 14 days, and nothing else waiting
    async with smtp_server() as (inbox, port):
        config = (await _setup(tmp_path, port)).replace(default_language="da")
        async with Services.open(config) as services:
            report = await submit(services, text=CANARY)
            soon = (dt.date(2026, 3, 1) + dt.timedelta(days=5)).isoformat()
            await services.store.update_report(report.report_id, status="closed", closed_day="2026-02-01",
                                               expires_day=soon)
            # When the notices of 1 March go out
            assert await Notifier(config=config, store=services.store).check_once(on=dt.date(2026, 3, 1)) == 2
        # Then each says only that something needs attention, in the configured language: no id,
        # no count, no day, and not that it is about a deletion
        for message in inbox.messages():
            body = message.get_payload(decode=True).decode()
            assert "kræver din opmærksomhed" in body
            assert report.report_id not in body and report.report_id[:8] not in body and CANARY not in body
            assert soon not in body and "slet" not in body.lower() and "1" not in body
