"""A fresh install for a test: `init` and `caseworker add` in-process, at the test Config's cost.

One way to make an install, whatever then runs on it (the apps in-process, the real server as a
process, a browser): `new_install(data_dir, accounts, **config_changes)`. The accounts are
`Account`s with their passphrases, so a test that logs in names the same passphrase it was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dropbox import accounts
from dropbox.config import Config, config_for_tests
from dropbox.install import init_install
from dropbox.kdf_pool import KdfPool
from dropbox.storage import Store

#: The test caseworkers' passphrases (long enough for the passphrase rules).
PASSPHRASES = {"alice": "correct horse battery staple", "bob": "bob's long enough passphrase",
               "carol": "carol also has a passphrase"}


@dataclass(frozen=True)
class Account:
    """A caseworker to create at install time."""

    name: str
    passphrase: str
    admin: bool = False
    #: None: the default channel (so new reports are granted to them); []: no channel at all.
    channels: tuple[str, ...] | None = None


ALICE = Account("alice", PASSPHRASES["alice"], admin=True)
BOB = Account("bob", PASSPHRASES["bob"])
CAROL = Account("carol", PASSPHRASES["carol"])
#: alice (admin), bob and carol, all members of the default channel: the caseworker-app tests' staff.
STAFF: tuple[Account, ...] = (ALICE, BOB, CAROL)


async def new_install(data_dir: Path, accounts_: Sequence[Account] = (ALICE,), **changes: object) -> Config:
    """`init` + `caseworker add` per account, at the Config's (by default the cheapest) Argon2id cost."""
    config = config_for_tests(data_dir, **changes)
    await init_install(config)
    store = await Store.open(config.db_path)
    kdf = KdfPool(concurrency=2, queue_limit=64)
    try:
        for account in accounts_:
            await accounts.add_caseworker(
                store=store, kdf=kdf, config=config, name=account.name, passphrase=account.passphrase,
                is_admin=account.admin, channel_ids=None if account.channels is None else list(account.channels))
    finally:
        kdf.close()
        await store.close()
    return config


async def login(store: Store, kdf: KdfPool, config: Config, name: str) -> accounts.CaseworkerSession:
    """A caseworker's session through the domain function, with the test passphrase of `name`."""
    return await accounts.login(store=store, kdf=kdf, config=config, name=name, passphrase=PASSPHRASES[name])
