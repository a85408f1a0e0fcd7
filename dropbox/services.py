"""The long-lived objects both web apps share: the store, the KDF pool, file contents and the limits on uploads.

Opening them also settles what a crash left behind (file recovery) before any request is served.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from dropbox.blobs import BlobStore
from dropbox.config import Config
from dropbox.install import Install, load_install
from dropbox.kdf_pool import KdfPool
from dropbox.storage import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    config: Config
    store: Store
    kdf: KdfPool
    blobs: BlobStore
    install: Install

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, config: Config) -> AsyncIterator[Services]:
        store = await Store.open(config.db_path)
        kdf = KdfPool(concurrency=config.kdf_concurrency, queue_limit=config.kdf_queue_limit)
        try:
            blobs = BlobStore(store, config)
            await blobs.recover()
            yield cls(config=config, store=store, kdf=kdf, blobs=blobs, install=await load_install(store))
        finally:
            kdf.close()
            await store.close()
