"""Publish both onion services and keep them published while the app serves.

`OnionServices` runs one background task. It launches a private tor (or connects to a system
tor), publishes the whistleblower onion publicly and the caseworker onion with v3 client
authorization, both with the PoW DoS defence where tor supports it, and then watches: if tor
goes away it starts again with backoff; if the set of authorized clients changes on disk (the
`onion add-client` / `remove-client` commands) it republishes the caseworker onion, so a
revocation takes effect within seconds without restarting the app.

Services are created with ADD_ONION from our own persisted keys (see keys.py), not detached:
they vanish with our control connection. A system tor may instead serve them from its torrc
(HiddenServiceDir, see torrc.example): we find them already hosted (GETINFO
hs/service/desc/id) and only report on them; a sandboxed system tor never gets an ADD_ONION.

The caseworker onion is never published without at least one authorized client: tor treats
"no client keys" as "no client auth", which would make the staff interface public.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import stem
from stem.control import EventType

from onion.controller import Tor, bootstrap_progress, connect_tor, launch_tor
from onion.errors import KeyFileError, OnionError, PublishFailed, TorTooOld
from onion.keys import (
    CASEWORKER,
    WHISTLEBLOWER,
    AuthorizedClient,
    ServiceKey,
    ensure_service_keys,
    list_clients,
)
from onion.protocol import add_onion_command, onion_target, reply, torrc_services_have_pow
from onion.settings import OnionSettings
from onion.support import client_auth_support, installed_tor, pow_support

log = logging.getLogger(__name__)

#: How long a system tor gets, after bootstrapping, to build a torrc onion's descriptor.
DESCRIPTOR_WAIT_SECONDS = 60.0

@dataclass(frozen=True)
class OnionStatus:
    """A snapshot of the onion services for `onion show`, logs and an admin status page."""

    #: "starting", "published", "stopped" or "failed: <why>".
    state: str = "stopped"
    #: What is happening or missing right now, and how to fix it.
    detail: str = ""
    public_address: str | None = None
    caseworker_address: str | None = None
    #: "private tor in data/tor" or "system tor at /run/tor/control".
    tor_mode: str = ""
    tor_version: str | None = None
    bootstrap_percent: int = 0
    public_published: bool = False
    caseworker_published: bool = False
    #: True: ClientAuthV3 is set; None: unknown (the caseworker onion comes from torrc).
    client_auth_on: bool | None = False
    authorized_clients: int = 0
    pow_on: bool = False
    #: "supported", or why the PoW defence is off.
    pow_reason: str = ""


class OnionServices:
    """Keeps tor running (launched or connected) and both onions published while the app serves.

    `tor_control`: a system tor's control socket path or port; None launches a private tor in
    `config.tor_dir`. `tor_config_overrides`: extra torrc options for that private tor (tests
    use it to join a private Tor network). The timing arguments exist for tests.
    """

    def __init__(
        self,
        config: OnionSettings,
        *,
        tor_control: str | None = None,
        tor_cmd: str = "tor",
        tor_config_overrides: Mapping[str, str | Sequence[str]] | None = None,
        publish_timeout: float = 300.0,
        retry_max_seconds: float = 60.0,
        client_check_seconds: float = 5.0,
    ) -> None:
        self._config = config
        self._tor_control = tor_control or config.tor_control
        self._tor_cmd = tor_cmd
        self._overrides = dict(tor_config_overrides or {})
        self._publish_timeout = publish_timeout
        self._retry_max = retry_max_seconds
        self._client_check = client_check_seconds
        mode = f"system tor at {self._tor_control}" if self._tor_control else (
            f"private tor in {config.tor_dir}"
        )
        self._status = OnionStatus(tor_mode=mode)
        self._waiters: list[asyncio.Future[None]] = []
        self._last_warning = ""
        self._last_complaint = ""
        self._last_tor_log = ""
        self._task: asyncio.Task[None] | None = None
        # Per tor session: service ids we wait for, and which of them tor has uploaded.
        self._expected: dict[str, str] = {}
        self._uploaded: dict[str, asyncio.Event] = {}
        #: Per service id: tor reported any HS_DESC event for it (a torrc onion's descriptor exists).
        self._descriptor_seen: dict[str, asyncio.Event] = {}
        self._clients: tuple[AuthorizedClient, ...] = ()
        self._pow = (False, "")

    # -- public interface -------------------------------------------------------------------

    @property
    def status(self) -> OnionStatus:
        """The latest snapshot; a new object on every change, so it can be kept and compared."""
        return self._status

    async def start(self) -> None:
        """Start the background task and return at once; see `status` for how it goes."""
        if self._task is None or self._task.done():
            self._set(state="starting", detail="starting tor")
            self._task = asyncio.create_task(self._run(), name="onion-services")

    async def stop(self) -> None:
        """Withdraw both onions and stop (or disconnect from) tor."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():  # our caller is being cancelled, not just the task
                    raise
        self._set(state="stopped", detail="", public_published=False, caseworker_published=False)

    async def wait_until_published(self, *, timeout: float) -> OnionStatus:
        """Wait until the onions that should be up are uploaded; TimeoutError otherwise.

        Failures do not end the wait early: the background task retries them, and the
        TimeoutError names the last state.
        """
        return await self.wait_for(lambda status: status.state == "published", timeout=timeout)

    async def wait_for(
        self, predicate: Callable[[OnionStatus], bool], *, timeout: float
    ) -> OnionStatus:
        """Wait until `predicate(status)` holds, woken by each status change."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self._status):
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            raise TimeoutError(f"no such onion status after {timeout} s: {self._status}") from None
        return self._status

    # -- status -----------------------------------------------------------------------------

    def _set(self, **changes: Any) -> None:
        self._status = dataclasses.replace(self._status, **changes)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- supervisor -------------------------------------------------------------------------

    async def _run(self) -> None:
        """Keep a tor session going; after each failure wait 1, 2, 4 ... 60 s and try again."""
        failures = 0
        while True:
            try:
                await self._session()
                failures = 0  # it had published: start again at once
                self._set(state="starting", detail="starting again",
                          public_published=False, caseworker_published=False)
            except OnionError as exc:
                failures += 1
                self._set(state=f"failed: {exc}", detail=str(exc),
                          public_published=False, caseworker_published=False)
                log.error("onion services are down: %s", exc)
            except Exception:  # a bug here must not silently end the supervisor: log, retry
                failures += 1
                log.exception("unexpected error in the onion services task")
                self._set(state="failed: internal error (see log)",
                          public_published=False, caseworker_published=False)
            await asyncio.sleep(min(self._retry_max, 2.0 ** min(failures - 1, 10)))

    async def _open(self) -> Tor:
        if self._tor_control:
            return await connect_tor(control=self._tor_control)
        return await launch_tor(
            tor_dir=self._config.tor_dir, tor_cmd=self._tor_cmd, overrides=self._overrides
        )

    async def _session(self) -> None:
        """One tor lifetime: open, publish, watch. Returns after publishing, once tor goes
        away or a key is rotated; raises OnionError when something is missing."""
        keys = await asyncio.to_thread(ensure_service_keys, self._config)
        self._set(public_address=keys[WHISTLEBLOWER].address,
                  caseworker_address=keys[CASEWORKER].address)
        tor = await self._open()
        try:
            self._set(tor_version=tor.version, detail="tor is bootstrapping")
            self._expected, self._uploaded, self._descriptor_seen = {}, {}, {}
            await tor.listen(self._on_bootstrap, EventType.STATUS_CLIENT)
            await tor.listen(self._on_hs_desc, EventType.HS_DESC)
            await tor.listen(self._on_tor_log, EventType.WARN, EventType.ERR)
            phase = await tor.get_info("status/bootstrap-phase")
            self._set(bootstrap_percent=bootstrap_progress(phase or "")[0])
            self._pow = await self._pow_decision(tor)
            self._set(pow_on=self._pow[0], pow_reason=self._pow[1])
            await self._publish(tor, WHISTLEBLOWER, keys[WHISTLEBLOWER], clients=())
            self._clients = tuple(await asyncio.to_thread(list_clients, self._config))
            await self._publish_caseworker(tor, keys[CASEWORKER])
            await self._await_uploads(tor)
            self._set(state="published", detail=self._published_detail())
            log.info("onion services published: %s (public), %s (caseworkers, %d clients)",
                     keys[WHISTLEBLOWER].address, keys[CASEWORKER].address,
                     len(self._clients))
            reason = await self._watch(tor, keys)
            log.warning("%s; starting the onion services again", reason)
        finally:
            await tor.close()

    def _published_detail(self) -> str:
        if not self._clients:
            return ("caseworker onion withheld: no authorized clients; "
                    "run `onion add-client NAME`")
        return ""

    # -- tor events -------------------------------------------------------------------------

    def _on_bootstrap(self, event: Any) -> None:
        if getattr(event, "action", None) != "BOOTSTRAP":
            return
        percent, summary = bootstrap_progress(event)
        changes: dict[str, Any] = {"bootstrap_percent": percent}
        if self._status.state == "starting":
            changes["detail"] = f"tor bootstrapping {percent}%: {summary}"
        if getattr(event, "runlevel", "") in ("WARN", "ERR") and summary != self._last_warning:
            self._last_warning = summary  # tor repeats the warning on every retry
            log.warning("tor bootstrap problem at %d%%: %s", percent, summary)
        self._set(**changes)

    def _on_tor_log(self, event: Any) -> None:
        """tor's own warnings, into our log (a launched tor has no log of its own)."""
        message = str(getattr(event, "message", "")).strip()
        if message and message != self._last_tor_log:
            self._last_tor_log = message  # tor repeats some warnings every few seconds
            log.warning("tor %s: %s", str(event.runlevel).lower(), message)

    def _on_hs_desc(self, event: Any) -> None:
        if event.address in self._descriptor_seen:
            self._descriptor_seen[event.address].set()
        if event.action == stem.HSDescAction.UPLOADED and event.address in self._expected:
            self._uploaded[event.address].set()
            service = self._expected[event.address]
            field = "public_published" if service == WHISTLEBLOWER else "caseworker_published"
            if not getattr(self._status, field):
                self._set(**{field: True})
        elif event.action == stem.HSDescAction.FAILED and event.address in self._expected:
            log.info("descriptor upload of the %s onion to %s failed: %s",
                     self._expected[event.address], event.directory, event.reason)

    # -- publishing -------------------------------------------------------------------------

    async def _pow_decision(self, tor: Tor) -> tuple[bool, str]:
        pow_module = None
        if tor.launched:
            installed = await asyncio.to_thread(installed_tor, self._tor_cmd)
            pow_module = installed.pow_module if installed else None
        return pow_support(tor.version, pow_module=pow_module)

    def _target(self, service: str) -> str:
        port = self._config.port if service == WHISTLEBLOWER else self._config.admin_port
        return onion_target(self._config.host, port)

    async def _publish(
        self, tor: Tor, service: str, key: ServiceKey, *, clients: Sequence[AuthorizedClient]
    ) -> None:
        """ADD_ONION one service; if a system tor's torrc already serves it, accept that.

        A system tor is asked first whether it hosts the address: with `Sandbox 1` tor
        cannot create onion services at run time, so ADD_ONION must not even be tried there.
        """
        if not tor.launched and await self._torrc_serves(tor, key):
            await self._accept_torrc_service(tor, service, key)
            return
        if not tor.launched and await tor.get_conf("Sandbox") == "1":
            raise PublishFailed(
                f"the system tor runs with Sandbox 1, which cannot add onion services at run "
                f"time, and once bootstrapped it has no descriptor for the {service} onion "
                f"({key.address}): check its HiddenServiceDir in the torrc, run `python run.py onion "
                "sync` and restart tor (see torrc.example)"
            )
        command = add_onion_command(key, target=self._target(service), clients=clients,
                                    pow_on=self._pow[0])
        code, text = reply(await tor.msg(command))
        if code == "512" and self._pow[0] and "PoW" in text:
            self._pow = (False, f"tor refused PoWDefensesEnabled: {text}")
            self._set(pow_on=False, pow_reason=self._pow[1])
            command = add_onion_command(key, target=self._target(service), clients=clients,
                                        pow_on=False)
            code, text = reply(await tor.msg(command))
        if code == "550" and "collision" in text.lower() and not tor.launched:
            await self._accept_torrc_service(tor, service, key)
            return
        if code != "250" or not text.startswith("ServiceID="):
            raise PublishFailed(f"tor refused to publish the {service} onion: {code} {text}")
        service_id = text.removeprefix("ServiceID=")
        if service_id != key.service_id:
            raise PublishFailed(
                f"tor published {service} as {service_id}.onion, expected {key.address}"
            )
        self._expected[service_id] = service
        self._uploaded[service_id] = asyncio.Event()

    async def _torrc_serves(self, tor: Tor, key: ServiceKey) -> bool:
        """Whether a system tor's torrc serves `key`, asked only when tor can know.

        Before tor has bootstrapped it has built no descriptor, not even for the torrc's onions,
        and it builds them a little after: asking too early would report a correct torrc as
        missing the service. So: wait for bootstrap, then (if the torrc declares any onion) give
        tor up to DESCRIPTOR_WAIT_SECONDS to build this one, woken by its HS_DESC events.
        """
        await self._wait_bootstrapped(tor)
        query = f"hs/service/desc/id/{key.service_id}"
        seen = self._descriptor_seen.setdefault(key.service_id, asyncio.Event())
        if await tor.get_info(query):
            return True
        options = await tor.msg("GETCONF HiddenServiceOptions")
        if not any(line.startswith("HiddenServiceDir=") for _code, _div, line in options.content()):
            return False  # the torrc serves no onion at all: nothing to wait for
        self._set(detail=f"waiting for tor to build the descriptor of {key.address}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen.wait(), timeout=DESCRIPTOR_WAIT_SECONDS)
        return bool(await tor.get_info(query))

    async def _wait_bootstrapped(self, tor: Tor) -> None:
        """Return once tor reports 100% bootstrap (woken by its STATUS_CLIENT events)."""
        percent, summary = bootstrap_progress(await tor.get_info("status/bootstrap-phase") or "")
        if percent >= 100:
            return
        self._set(bootstrap_percent=max(percent, self._status.bootstrap_percent),
                  detail=f"waiting for tor to bootstrap ({percent}%: {summary}) before checking its onions")
        try:
            await self.wait_for(lambda status: status.bootstrap_percent >= 100, timeout=self._publish_timeout)
        except TimeoutError:
            raise PublishFailed(f"tor did not finish bootstrapping within {self._publish_timeout:.0f} s "
                                f"(at {self._status.bootstrap_percent}%); is its network reachable?") from None

    async def _accept_torrc_service(self, tor: Tor, service: str, key: ServiceKey) -> None:
        """The system tor's torrc already serves this key (HiddenServiceDir): watch, not add.

        Its client auth lives in the HiddenServiceDir, where we cannot look: reported as
        unknown. Its PoW setting is read back from tor's configuration.
        """
        field = "public_published" if service == WHISTLEBLOWER else "caseworker_published"
        changes: dict[str, Any] = {field: True}
        if service == CASEWORKER:
            changes["client_auth_on"] = None
        torrc_pow = await self._torrc_pow(tor)
        changes["pow_on"] = torrc_pow
        changes["pow_reason"] = "set in torrc" if torrc_pow else (
            "the torrc's onion services lack HiddenServicePoWDefensesEnabled 1"
        )
        self._set(**changes)
        log.info("the %s onion is served by the system tor's torrc (HiddenServiceDir); "
                 "its client auth and PoW settings are the torrc's", service)

    async def _torrc_pow(self, tor: Tor) -> bool:
        """Whether every HiddenServiceDir in the system tor's torrc has the PoW defence on."""
        response = await tor.msg("GETCONF HiddenServiceOptions")
        return torrc_services_have_pow([line for _code, _div, line in response.content()])

    async def _publish_caseworker(self, tor: Tor, key: ServiceKey) -> None:
        self._set(authorized_clients=len(self._clients))
        if not tor.launched and await tor.get_info(f"hs/service/desc/id/{key.service_id}"):
            await self._accept_torrc_service(tor, CASEWORKER, key)
            return
        if not self._clients:
            self._set(client_auth_on=False, caseworker_published=False)
            log.warning("not publishing the caseworker onion: no authorized clients; "
                        "run `onion add-client NAME`")
            return
        supported, reason = client_auth_support(tor.version)
        if not supported:
            raise TorTooOld(reason)
        await self._publish(tor, CASEWORKER, key, clients=self._clients)
        if self._status.client_auth_on is not None:
            self._set(client_auth_on=True)

    async def _await_uploads(self, tor: Tor) -> None:
        """Wait until tor uploaded every added descriptor at least once, or time out."""
        pending = [event.wait() for event in self._uploaded.values()]
        closed: asyncio.Future[Any] = asyncio.ensure_future(tor.closed.wait())
        uploads: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*pending))
        try:
            done, _ = await asyncio.wait(
                {closed, uploads}, timeout=self._publish_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            closed.cancel()
            uploads.cancel()
        if uploads in done:
            return
        if closed in done:
            raise PublishFailed("tor exited before publishing the onions")
        percent = self._status.bootstrap_percent
        raise PublishFailed(
            f"tor did not publish within {self._publish_timeout:.0f} s (bootstrap at {percent}%"
            f"{': ' + self._status.detail if self._status.detail else ''}); check that this "
            "machine can reach the Tor network and its clock is right"
        )

    # -- watching ---------------------------------------------------------------------------

    async def _watch(self, tor: Tor, keys: Mapping[str, ServiceKey]) -> str:
        """Until tor goes away or a key is rotated: republish the caseworker onion when its
        clients change. Returns why the session should start over."""
        while True:
            try:
                await asyncio.wait_for(tor.closed.wait(), self._client_check)
            except TimeoutError:
                pass
            else:
                return f"lost the {self._status.tor_mode}"
            complaints = []
            try:
                current = await asyncio.to_thread(ensure_service_keys, self._config)
            except KeyFileError as exc:  # keep serving with the keys already in use
                complaints.append(f"{exc}; still serving with the keys loaded at start")
                current = dict(keys)
            if current != keys:
                return "an onion key was rotated"
            try:
                clients = tuple(await asyncio.to_thread(list_clients, self._config))
            except KeyFileError as exc:  # fail closed: nobody in rather than the wrong people
                complaints.append(f"{exc}; caseworker onion withdrawn until it is fixed")
                clients = ()
            self._complain("; ".join(complaints))
            if clients != self._clients:
                await self._republish_caseworker(tor, keys[CASEWORKER], clients)

    def _complain(self, message: str) -> None:
        """Log a problem found while watching once, not on every check; "" when it is fixed."""
        if message == self._last_complaint:
            return
        self._last_complaint = message
        if message:
            log.error("%s", message)
        else:
            log.info("onion key files are readable again")
        self._set(detail=message or self._published_detail())

    async def _republish_caseworker(
        self, tor: Tor, key: ServiceKey, clients: tuple[AuthorizedClient, ...]
    ) -> None:
        log.info("caseworker clients changed (%d -> %d); republishing the caseworker onion",
                 len(self._clients), len(clients))
        if key.service_id in self._expected:
            code, text = reply(await tor.msg(f"DEL_ONION {key.service_id}"))
            if code != "250":
                raise PublishFailed(f"tor would not withdraw the caseworker onion: {text}")
            del self._expected[key.service_id]
            del self._uploaded[key.service_id]
        self._set(caseworker_published=False)
        self._clients = clients
        await self._publish_caseworker(tor, key)
        await self._await_uploads(tor)
        self._set(detail=self._last_complaint or self._published_detail())
