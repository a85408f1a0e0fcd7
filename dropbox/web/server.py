"""`python run.py serve`: both apps on loopback, published as onion services, until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from aiohttp import web

from dropbox.config import Config
from dropbox.datalock import DataFolderBusy, data_lock
from dropbox.health import remove_server_status, write_server_status
from dropbox.install import migration_advice, newer_schema_advice
from dropbox.retention import purge_expired
from dropbox.services import Services
from dropbox.storage import NeedsMigration, NewerSchema, NotInitialised
from dropbox.web.apps import create_caseworker_app, create_whistleblower_app
from dropbox.web.middleware import install_log_filters, run_kwargs

if TYPE_CHECKING:
    from onion.publish import OnionServices

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 6 * 3600
#: How soon the purge run comes back while a delete's page images may still be in the WAL
#: (its checkpoint was held up by a reader: retention.forget_deleted).
WAL_RETRY_SECONDS = 60


class PortUnavailable(Exception):
    """An app's address cannot be bound (in use by another program, or not allowed)."""


async def serve(config: Config, *, tor: bool = True, tor_control: str | None = None) -> int:
    """Serve until SIGINT/SIGTERM; 2 (one log line) if there is no install or another process
    holds the data folder."""
    install_log_filters()
    if not config.db_path.exists():
        log.error("no install in %s: run `python run.py init` first", config.data_dir)
        return 2
    try:
        with data_lock(config):
            async with Services.open(config) as services:
                await _serve(services, tor=tor, tor_control=tor_control)
    except DataFolderBusy as e:
        log.error("%s", e)
        return 2
    except NotInitialised:
        log.error("no install in %s: run `python run.py init` first", config.data_dir)
        return 2
    except PortUnavailable as e:
        log.error("%s", e)
        return 2
    except NeedsMigration as e:
        log.error("refusing to serve: %s", migration_advice(config, e.version, e.latest))
        return 2
    except NewerSchema as e:
        log.error("refusing to serve: %s", newer_schema_advice(config, e.version, e.latest))
        return 2
    return 0


async def start_apps(services: Services, *, ports: tuple[int, int]) -> list[web.AppRunner]:
    """Both apps on `config.host` as `serve` runs them (shared services, the quiet access log).

    Returns the whistleblower's runner, then the caseworker's; port 0 picks a free port (tests).
    """
    config = services.config
    runners: list[web.AppRunner] = []
    try:
        for app, port in ((create_whistleblower_app(config, services=services), ports[0]),
                          (create_caseworker_app(config, services=services), ports[1])):
            runner = web.AppRunner(app, **run_kwargs())
            await runner.setup()
            runners.append(runner)
            try:
                await web.TCPSite(runner, config.host, port).start()
            except OSError as e:
                raise PortUnavailable(f"cannot listen on {config.host}:{port} ({e.strerror}): another "
                                      "program uses it? Choose another with --port/--admin-port or in "
                                      "config.toml [network], and match tor's HiddenServicePort") from e
    except BaseException:
        await stop_apps(runners)
        raise
    return runners


async def stop_apps(runners: list[web.AppRunner]) -> None:
    for runner in reversed(runners):
        await runner.cleanup()


async def _serve(services: Services, *, tor: bool, tor_control: str | None) -> None:
    config = services.config
    if not await services.store.caseworkers():
        log.warning("no caseworker yet: reports cannot be accepted until one is added "
                    "(python run.py caseworker add NAME)")
    runners = await start_apps(services, ports=(config.port, config.admin_port))
    onion: OnionServices | None = None
    try:
        log.info("whistleblower app on http://%s:%d/, caseworker app on http://%s:%d/",
                 config.host, config.port, config.host, config.admin_port)
        background = [asyncio.create_task(_purge_periodically(services))]
        if tor:
            onion = await _start_onion(config, tor_control)
            background.append(asyncio.create_task(_report_onion_status(config, onion, services.cleaning_problem)))
        else:
            log.info("--no-tor: not publishing onion services")
            write_server_status(config, onions=None, cleaning_problem=services.cleaning_problem)
        await _wait_for_stop_signal()
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        if onion is not None:
            await onion.stop()
        await stop_apps(runners)
        remove_server_status(config)


async def _start_onion(config: Config, tor_control: str | None) -> OnionServices:
    from onion.publish import OnionServices

    services = OnionServices(config, tor_control=tor_control)
    await services.start()
    return services


async def _report_onion_status(config: Config, onion: OnionServices, cleaning_problem: str | None) -> None:
    """Keep DATA/status.json (read by `run.py status`) in step with every onion status change."""
    while True:
        seen = onion.status
        write_server_status(config, onions=seen, cleaning_problem=cleaning_problem)
        with contextlib.suppress(TimeoutError):
            await onion.wait_for(lambda status, seen=seen: status is not seen, timeout=3600)  # type: ignore[misc]


async def _purge_periodically(services: Services) -> None:
    while True:
        try:
            await purge_expired(store=services.store)
            await services.blobs.sweep()  # chunks of uploads whose clean-up failed
        except Exception as e:  # keep serving; the next round retries
            log.error("retention purge failed: %s", type(e).__name__)
        await asyncio.sleep(WAL_RETRY_SECONDS if services.store.wal_holds_deleted else PURGE_INTERVAL_SECONDS)


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
