"""`python run.py serve`: both apps on loopback, published as onion services, until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from aiohttp import web

from dropbox.app import create_caseworker_app, create_whistleblower_app
from dropbox.config import Config
from dropbox.retention import purge_expired
from dropbox.services import Services
from dropbox.storage import NotInitialised
from dropbox.web import install_log_filters, run_kwargs

if TYPE_CHECKING:
    from onion.publish import OnionServices

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 6 * 3600


async def serve(config: Config, *, tor: bool = True, tor_control: str | None = None) -> int:
    install_log_filters()
    try:
        async with Services.open(config) as services:
            await _serve(services, tor=tor, tor_control=tor_control)
    except NotInitialised:
        log.error("no install in %s: run `python run.py init` first", config.data_dir)
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
            await web.TCPSite(runner, config.host, port).start()
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
        if tor:
            onion = await _start_onion(config, tor_control)
        else:
            log.info("--no-tor: not publishing onion services")
        purger = asyncio.create_task(_purge_periodically(services))
        await _wait_for_stop_signal()
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
    finally:
        if onion is not None:
            await onion.stop()
        await stop_apps(runners)


async def _start_onion(config: Config, tor_control: str | None) -> OnionServices:
    from onion.publish import OnionServices

    services = OnionServices(config, tor_control=tor_control)
    await services.start()
    return services


async def _purge_periodically(services: Services) -> None:
    while True:
        try:
            await purge_expired(store=services.store)
            await services.blobs.sweep()  # chunks of uploads whose clean-up failed
        except Exception as e:  # keep serving; the next round retries
            log.error("retention purge failed: %s", type(e).__name__)
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
