"""Shared fixtures: every test gets a fresh install under its own temp folder, cheap Argon2id."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dropbox import accounts
from dropbox.blobs import BlobStore
from dropbox.config import Config, config_for_tests
from dropbox.install import Install, init_install, load_install
from dropbox.kdf_pool import KdfPool
from dropbox.storage import Caseworker, Store

pytest_plugins = ["tests.tor_fixtures"]

PASSPHRASES = {"alice": "correct horse battery staple", "bob": "bob's long enough passphrase",
               "carol": "carol also has a passphrase"}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return config_for_tests(tmp_path / "data")


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    await init_install(config)
    store = await Store.open(config.db_path)
    yield store
    await store.close()


@pytest.fixture
def kdf() -> Iterator[KdfPool]:
    pool = KdfPool(concurrency=2, queue_limit=64)
    yield pool
    pool.close()


@pytest.fixture
async def install(store: Store) -> Install:
    return await load_install(store)


@pytest.fixture
def blobs(config: Config, store: Store) -> BlobStore:
    return BlobStore(store, config)


@pytest.fixture
async def alice(store: Store, kdf: KdfPool, config: Config) -> Caseworker:
    return await accounts.add_caseworker(store=store, kdf=kdf, config=config, name="alice",
                                         passphrase=PASSPHRASES["alice"])


async def login(store: Store, kdf: KdfPool, config: Config, name: str) -> accounts.CaseworkerSession:
    return await accounts.login(store=store, kdf=kdf, config=config, name=name, passphrase=PASSPHRASES[name])


def all_bytes_under(folder: Path) -> dict[Path, bytes]:
    """Every file below `folder`, read raw: what someone holding the disk would see."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@contextlib.asynccontextmanager
async def database_full(store: Store) -> AsyncIterator[None]:
    """The database refuses to grow, as on a full disk: SQLite's own SQLITE_FULL ("database or
    disk is full"), raised by the real pager, through `PRAGMA max_page_count`. Nothing is mocked."""
    async with store._lock:  # between two of the store's transactions
        await store._writer.execute("VACUUM")  # no free pages left inside the file to grow into
        row = await store._one("PRAGMA page_count")
        await store._writer.execute(f"PRAGMA max_page_count = {int(row[0]) if row else 1}")
    try:
        yield
    finally:
        async with store._lock:
            await store._writer.execute("PRAGMA max_page_count = 4294967294")
