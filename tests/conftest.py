"""Shared fixtures: every test gets a fresh install under its own temp folder, cheap Argon2id.

Helpers that tests import live in tests/support/ (see its __init__); this file holds fixtures only.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dropbox import accounts
from dropbox.blobs import BlobStore
from dropbox.config import Config, config_for_tests
from dropbox.install import Install, init_install, load_install
from dropbox.kdf_pool import KdfPool
from dropbox.storage import Caseworker, Store
from tests.support.installs import PASSPHRASES
from tests.support.server_process import run_cli

pytest_plugins = ["tests.support.tor_fixtures"]


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


@pytest.fixture(scope="session")
def cli_init_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder made by `python run.py init` for the whole session (see `cli_initialised`)."""
    data = tmp_path_factory.mktemp("cli-init") / "data"
    run_cli("init", data=data)
    return data


@pytest.fixture
def cli_initialised(tmp_path: Path, cli_init_template: Path) -> Path:
    """A fresh copy (modes kept) of a folder `python run.py init` made, as tmp_path/"data": for the
    operator-command tests that need an install but do not test `init` itself, each of which would
    otherwise start one more interpreter to make the same files."""
    data = tmp_path / "data"
    shutil.copytree(cli_init_template, data)
    return data
