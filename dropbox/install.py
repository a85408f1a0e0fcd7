"""Creating an install's data folder and reading back what every request needs from it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dropbox.config import Config
from dropbox.sealing import KdfParams
from dropbox.signing import ensure_signing_key
from dropbox.storage import Channel, NotFound, Store

DEFAULT_CHANNEL_ID = "default"


class AlreadyInitialised(Exception):
    """`init` was run on a data folder that already holds a database; nothing was changed."""


@dataclass(frozen=True)
class Install:
    """Install-wide values loaded once at start-up."""

    receipt_kdf: KdfParams


def make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


async def init_install(config: Config) -> None:
    """Create folders (0700), the signing key, the database, the receipt salt and a default channel."""
    if config.db_path.exists():
        raise AlreadyInitialised(str(config.data_dir))
    for path in (config.data_dir, config.keys_dir):
        make_private_dir(path)
    ensure_signing_key(config.data_dir)
    store = await Store.open(config.db_path, create=True)
    try:
        kdf = KdfParams.fresh(ops=config.kdf_ops, mem=config.kdf_mem)
        await store.set_meta({
            "receipt_salt": kdf.salt,
            "receipt_kdf": json.dumps({"ops": kdf.ops, "mem": kdf.mem}).encode(),
        })
        await store.add_channel(Channel(
            id=DEFAULT_CHANNEL_ID, name="Whistleblower channel", description="", questions="[]",
            retention_days=min(config.default_retention_days, config.max_retention_days), is_default=True,
        ))
    finally:
        await store.close()
    os.chmod(config.db_path, 0o600)


async def load_install(store: Store) -> Install:
    try:
        salt = await store.get_meta("receipt_salt")
        cost = json.loads(await store.get_meta("receipt_kdf"))
    except NotFound as e:
        raise NotFound("install metadata missing; was `init` interrupted?") from e
    return Install(receipt_kdf=KdfParams(salt=salt, ops=int(cost["ops"]), mem=int(cost["mem"])))


def migration_advice(config: Config, version: int, latest: int) -> str:
    """What the operator reads when the database needs migrating: the commands, backup first."""
    return (f"the database in {config.data_dir} is at schema {version}, this version needs {latest}; "
            f"stop the server, take a backup (python run.py backup FILE --data {config.data_dir}), "
            f"then run: python run.py migrate --data {config.data_dir}")


def newer_schema_advice(config: Config, version: int, latest: int) -> str:
    """What the operator reads when the database is newer than this code: the way back."""
    return (f"the database in {config.data_dir} is at schema {version}, newer than this code ({latest}): "
            "run the newer version, or restore the backup taken before the upgrade")
