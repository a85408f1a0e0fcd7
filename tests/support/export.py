"""A real install with one report, exported as alice would: for the tests of the receiving side
(test_export_cli.py) and of the documented recipes (test_export_docs.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dropbox import accounts, export
from dropbox.config import Config
from dropbox.services import Services
from tests.support.domain import submit
from tests.support.installs import PASSPHRASES, new_install


@dataclass(frozen=True)
class Exported:
    config: Config
    zip_bytes: bytes
    #: The install's current signing key.
    public_key: bytes


async def exported_report(data_dir: Path, *, text: str, files: dict[str, bytes]) -> Exported:
    config = await new_install(data_dir)
    async with Services.open(config) as services:
        sent = await submit(services, text=text, files=files)
        session = await accounts.login(store=services.store, kdf=services.staff_kdf, config=config, name="alice",
                                       passphrase=PASSPHRASES["alice"])
        prepared = await export.prepare_export(store=services.store, blobs=services.blobs, session=session,
                                               report_id=sent.report_id, signer=services.signer)
        return Exported(config=config, zip_bytes=b"".join(export.stream_export(prepared)),
                        public_key=services.signer.public_key)
