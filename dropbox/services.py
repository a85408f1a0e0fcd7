"""The long-lived objects both web apps share: the store, the KDF pools, file contents and upload limits.

Each app has its own KDF pool, so no flood on the public app can delay a caseworker login; the
public one also keeps the receipt stock. Together they hold at most
(kdf_concurrency + staff_kdf_concurrency) × kdf_mem of Argon2id memory.
Opening them also settles what a crash left behind (file recovery) before any request is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from dropbox.blobs import BlobStore
from dropbox.cleaner_service import probe_cleaner
from dropbox.cleaning import Cleaner, settings_from
from dropbox.config import Config
from dropbox.install import Install, load_install
from dropbox.kdf_pool import KdfPool
from dropbox.receipt_stock import ReceiptStock
from dropbox.signing import InstallSigner, ensure_signing_key, load_signer
from dropbox.storage import Store

log = logging.getLogger(__name__)

#: The caseworker pool's threads run below the event loop but above the public pool's
#: (KDF_NICENESS), so a public flood that saturates the cores slows a caseworker login little.
STAFF_KDF_NICENESS = 5


@dataclass(frozen=True)
class Services:
    config: Config
    store: Store
    #: Receipt logins and receipts (the whistleblower app), logins capped in flight.
    public_kdf: KdfPool
    #: Caseworker logins and passphrase changes (the caseworker app).
    staff_kdf: KdfPool
    receipts: ReceiptStock
    blobs: BlobStore
    install: Install
    #: The install's signing key (proofs of reporting, exports); `signing-key --rotate` needs the
    #: server stopped (it takes the data folder's lock), so this never goes stale.
    signer: InstallSigner
    #: The one gate to the metadata cleaning sandbox (bounded concurrency, see cleaning.py).
    cleaner: Cleaner
    #: Why the cleaning sandbox could not start, in this process or in the cleaner service when
    #: Config.cleaner_socket names one (None: it starts). `serve` puts it
    #: in DATA/status.json, so `run.py status` reports it from inside the service's restrictions.
    cleaning_problem: str | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, config: Config) -> AsyncIterator[Services]:
        store = await Store.open(config.db_path)
        public_kdf = KdfPool(concurrency=config.kdf_concurrency, queue_limit=config.kdf_queue_limit,
                             normal_cap=config.max_receipt_logins_in_flight,
                             urgent_reserve=min(config.submission_kdf_reserve, config.kdf_concurrency - 1))
        staff_kdf = KdfPool(concurrency=config.staff_kdf_concurrency, queue_limit=config.staff_kdf_queue_limit,
                            niceness=STAFF_KDF_NICENESS)
        receipts: ReceiptStock | None = None
        try:
            blobs = BlobStore(store, config)
            await blobs.recover()
            install = await load_install(store)
            made = ensure_signing_key(config.data_dir)  # installs from before proofs get theirs here
            signer = load_signer(config.data_dir)
            if made:
                log.info("made the install signing key %s", signer.fingerprint)
            receipts = ReceiptStock(kdf=public_kdf, install=install, size=config.receipt_stock,
                                    quiet=blobs.no_uploads.wait)
            receipts.start()
            unusable = await asyncio.to_thread(probe_cleaner, config.cleaner_socket)
            if unusable:
                log.error("the metadata cleaning sandbox cannot start (%s): files will be kept as sent, "
                          "flagged as not cleaned", unusable)
            yield cls(config=config, store=store, public_kdf=public_kdf, staff_kdf=staff_kdf, receipts=receipts,
                      blobs=blobs, install=install, signer=signer, cleaner=Cleaner(settings_from(config)),
                      cleaning_problem=unusable)
        finally:
            if receipts is not None:
                await receipts.close()
            public_kdf.close()
            staff_kdf.close()
            await store.close()
