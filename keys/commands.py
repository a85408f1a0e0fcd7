"""The operator's provisioning commands behind `python run.py init | caseworker ... | purge | statistics`.

Each command returns an exit status. Operator mistakes (no install, unknown name, weak
passphrase) end in one clear line on stderr and status 2; nothing here prints a traceback for them.
"""

from __future__ import annotations

import contextlib
import getpass
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TextIO

from dropbox import accounts, audit, signing, statistics
from dropbox import verify as verification
from dropbox.audit import AuditAction
from dropbox.backup import BackupError, RestoreError, create_backup, needs_migration_after_restore, restore_backup
from dropbox.channels import join_channels
from dropbox.config import Config
from dropbox.datalock import DataFolderBusy, data_lock
from dropbox.health import Level, check_all
from dropbox.install import (
    AlreadyInitialised,
    init_install,
    make_private_dir,
    migration_advice,
    newer_schema_advice,
)
from dropbox.kdf_pool import KdfPool
from dropbox.passphrases import new_passphrase
from dropbox.retention import purge_expired
from dropbox.settings import FILE_NAME, write_settings
from dropbox.storage import (
    SCHEMA_VERSION,
    Conflict,
    NeedsMigration,
    NewerSchema,
    NotFound,
    NotInitialised,
    Store,
    migrate_database,
    schema_version,
)
from onion.keys import ensure_service_keys

OK, FAILED = 0, 2  # 2: the operator must change something, as for misuse


class CommandError(Exception):
    """An operator mistake; its message is printed as the one line the operator sees."""


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return FAILED


@contextlib.contextmanager
def locked(config: Config) -> Iterator[None]:
    """The data folder's lock for a writing command; a busy folder is the operator's one line."""
    try:
        with data_lock(config):
            yield
    except DataFolderBusy as e:
        raise CommandError(str(e)) from None


@contextlib.asynccontextmanager
async def _opened(config: Config, *, write: bool = True) -> AsyncIterator[tuple[Store, KdfPool]]:
    """The store and a small KDF pool; `write` also holds the data folder's lock throughout."""
    if not config.db_path.exists():
        raise CommandError(f"no install in {config.data_dir}; run `python run.py init` first")
    with locked(config) if write else contextlib.nullcontext():
        try:
            store = await Store.open(config.db_path)
        except NotInitialised as e:
            raise CommandError(f"no install in {config.data_dir}; run `python run.py init` first") from e
        except NeedsMigration as e:
            raise CommandError(migration_advice(config, e.version, e.latest)) from None
        except NewerSchema as e:
            raise CommandError(newer_schema_advice(config, e.version, e.latest)) from None
        kdf = KdfPool(concurrency=1, queue_limit=4)
        try:
            yield store, kdf
        finally:
            kdf.close()
            await store.close()


def _read_secret(prompt: str, *, stdin: bool, source: TextIO) -> str:
    if stdin:
        line = source.readline()
        if not line:
            raise CommandError("expected a passphrase on standard input")
        return line.rstrip("\r\n")
    return getpass.getpass(prompt)


async def init(config: Config) -> int:
    if config.db_path.exists():
        return _fail(f"{config.data_dir} already holds an install; nothing was changed")
    try:
        make_private_dir(config.data_dir)
    except OSError as e:  # a file in the way, a parent that is a file, no permission
        return _fail(f"cannot make the data folder {config.data_dir}: {e.strerror}")
    with locked(config):
        try:
            await init_install(config)
        except AlreadyInitialised:
            return _fail(f"{config.data_dir} already holds an install; nothing was changed")
        _ensure_onion_keys(config)
        settings_path = config.data_dir / FILE_NAME
        if write_settings(config, settings_path):
            print(f"Wrote the settings to {settings_path}: every setting, commented; edit it, then restart.")
    print(f"Initialised a new install in {config.data_dir}.")
    print(f"Signing key fingerprint (proofs of reporting): {signing.load_signer(config.data_dir).fingerprint}")
    print("Next: python run.py caseworker add NAME")
    return OK


def _ensure_onion_keys(config: Config) -> None:
    """Onion service keys are made at init so the addresses are known before first serve."""
    ensure_service_keys(config)


WEAK = (f"a passphrase needs at least {accounts.MIN_PASSPHRASE_CHARS} characters and must be hard to guess"
        f" (at least {accounts.MIN_PASSPHRASE_BITS} bits by zxcvbn's estimate; five or more random words)")


async def caseworker_add(config: Config, *, name: str, passphrase_stdin: bool, admin: bool,
                         channels: list[str] | None, source: TextIO = sys.stdin) -> int:
    try:
        accounts.check_name(name)
    except accounts.InvalidName:
        return _fail("a name is 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit")
    if passphrase_stdin:
        passphrase = _read_secret("", stdin=True, source=source)
        generated = None
    else:
        passphrase, bits = new_passphrase()
        generated = bits
    async with _opened(config) as (store, kdf):
        known = {c.id for c in await store.channels()}
        if channels is not None and not set(channels) <= known:
            return _fail(f"unknown channel(s): {', '.join(sorted(set(channels) - known))}")
        joins = channels if channels is not None else [c.id for c in await store.channels() if c.is_default]
        try:
            added = await accounts.add_caseworker(store=store, kdf=kdf, config=config, name=name,
                                                  passphrase=passphrase, is_admin=admin, channel_ids=[],
                                                  generated=generated is not None)
        except accounts.WeakPassphrase:
            return _fail(WEAK)
        except Conflict:
            return _fail(f"a caseworker named {name!r} already exists")
        # Audited, and told to each channel's members at their next login, like an admin's change.
        await join_channels(store=store, actor_id=None, caseworker_id=added.id, channel_ids=joins)
    print(f"Added caseworker {name}{' (admin)' if admin else ''}.")
    if generated is not None:
        print("Their passphrase, shown once and stored nowhere (hand it over in person;")
        print("they must replace it with their own at their first sign-in):")
        print(f"\n    {passphrase}\n")
        print(f"({generated:.0f} bits of entropy: seven words from the EFF long word list)")
    print("Reports that already exist are not readable by a new caseworker until granted:")
    print(f"    python run.py caseworker grant {name} --all --by EXISTING_CASEWORKER")
    return OK


async def caseworker_list(config: Config) -> int:
    async with _opened(config, write=False) as (store, _):
        workers = await store.caseworkers()
        channels = {c.id: c for c in await store.channels()}
        membership = {c: {m.id for m in await store.channel_members(c)} for c in channels}
    if not workers:
        print("No caseworkers yet. Add one: python run.py caseworker add NAME")
    for cw in workers:
        member_of = [c for c, ids in membership.items() if cw.id in ids]
        flags = ", ".join(f for f, on in (("admin", cw.is_admin), ("disabled", cw.disabled),
                                          ("2FA", cw.totp_sealed is not None)) if on)
        print(f"{cw.name:<24} since {cw.created_day}  channels: {', '.join(member_of) or '-'}"
              f"{'  [' + flags + ']' if flags else ''}")
    return OK


async def caseworker_disable(config: Config, *, name: str, enable: bool = False) -> int:
    async with _opened(config) as (store, _):
        try:
            await accounts.set_disabled(store=store, name=name, disabled=not enable)
        except NotFound:
            return _fail(f"no caseworker named {name!r}")
    print(f"{'Enabled' if enable else 'Disabled'} {name}.")
    return OK


async def caseworker_passwd(config: Config, *, name: str, passphrase_stdin: bool,
                            source: TextIO = sys.stdin) -> int:
    """Change a passphrase: the old one is required (it opens the grants that are re-sealed to a
    new key). Without --passphrase-stdin the new one is generated and must be changed at the
    next sign-in, since whoever ran this saw it."""
    old = _read_secret(f"Current passphrase for {name}: ", stdin=passphrase_stdin, source=source)
    if passphrase_stdin:
        new, bits = _read_secret("", stdin=True, source=source), None
    else:
        new, bits = new_passphrase()
    async with _opened(config) as (store, kdf):
        try:
            renewed = await accounts.change_passphrase(store=store, kdf=kdf, config=config, name=name, old=old,
                                                       new=new, generated=bits is not None)
        except accounts.LoginFailed:
            return _fail("that name and passphrase do not match an active caseworker")
        except accounts.WeakPassphrase:
            return _fail(WEAK)
        except accounts.ChangeConflict:
            return _fail("reports were being shared with this caseworker meanwhile; nothing changed, try again")
        renewed.wipe()
    print(f"Changed the passphrase of {name}: a new key, every report re-sealed to it; its open sessions end.")
    if bits is not None:
        print(f"New passphrase, shown once (to be replaced at the next sign-in):\n\n    {new}\n\n"
              f"({bits:.0f} bits of entropy)")
    return OK


async def caseworker_grant(config: Config, *, name: str, by: str, passphrase_stdin: bool,
                           source: TextIO = sys.stdin) -> int:
    """Re-seal every report `by` can read to `name`. Needs `by`'s passphrase."""
    passphrase = _read_secret(f"Passphrase of {by}: ", stdin=passphrase_stdin, source=source)
    async with _opened(config) as (store, kdf):
        try:
            granter = await accounts.login(store=store, kdf=kdf, config=config, name=by, passphrase=passphrase)
        except accounts.LoginFailed:
            return _fail("that name and passphrase do not match an active caseworker")
        try:
            added = await accounts.grant_all(store=store, granter=granter, grantee_name=name)
        except NotFound:
            return _fail(f"no caseworker named {name!r}")
        finally:
            granter.wipe()
    print(f"Granted {added} report(s) to {name}.")
    return OK


async def purge(config: Config) -> int:
    async with _opened(config) as (store, _):
        count = await purge_expired(store=store)
    print(f"Purged {count} expired report(s).")
    return OK


async def migrate(config: Config) -> int:
    """Bring the database to this code's schema; the one command that changes it."""
    if not config.db_path.exists():
        return _fail(f"no install in {config.data_dir}; run `python run.py init` first")
    with locked(config):
        before = schema_version(config.db_path)
        if before == SCHEMA_VERSION:
            print(f"The database is at schema {before} already; nothing to do.")
            _ensure_signing_key(config)
            return OK
        if before > SCHEMA_VERSION:
            return _fail(newer_schema_advice(config, before, SCHEMA_VERSION))
        print(f"Migrating the database from schema {before} to {SCHEMA_VERSION} ...")
        await migrate_database(config.db_path)
        _ensure_signing_key(config)
    print(f"Done: the database is at schema {SCHEMA_VERSION}.")
    return OK


def _ensure_signing_key(config: Config) -> None:
    """An install from before proofs of reporting gets its signing key with the migration."""
    if signing.ensure_signing_key(config.data_dir):
        print(f"Made the install signing key, fingerprint {signing.load_signer(config.data_dir).fingerprint}.")


async def signing_key(config: Config, *, rotate: bool, pem: bool) -> int:
    """Print the signing key's public half and fingerprint (what proofs are checked against);
    with `rotate`, retire it first and make a new one (audited; old proofs keep verifying)."""
    if not config.db_path.exists():
        return _fail(f"no install in {config.data_dir}; run `python run.py init` first")
    try:
        if rotate:
            await _rotate_signing_key(config)
        signer = signing.load_signer(config.data_dir)
        retired = signing.known_public_keys(config.data_dir)[1:]
    except signing.SigningKeyError as e:
        return _fail(str(e))
    if pem:
        sys.stdout.write(signing.public_key_pem(signer.public_key))
        return OK
    print(f"Public key (Ed25519, base64): {signer.public_key_text}")
    print(f"Fingerprint:                  {signer.fingerprint}")
    for key in retired:
        print(f"Retired key (still verifies): {signing.encode_public_key(key)}  {signing.fingerprint(key)}")
    return OK


async def _rotate_signing_key(config: Config) -> None:
    """Rotate under the data folder's lock (so not while serving: the apps hold the key) and audit it."""
    async with _opened(config) as (store, _):
        old = signing.load_signer(config.data_dir).fingerprint
        signing.rotate_signing_key(config.data_dir)
        new = signing.load_signer(config.data_dir).fingerprint
        await audit.record(store, actor_id=None, action=AuditAction.SIGNING_KEY_ROTATED, detail=new)
    print(f"Rotated the signing key: {old} is retired (proofs it signed still verify); {new} signs from now.")


def verify(config: Config, *, path: Path) -> int:
    """Check a signed file against the install's keys: 0 and what it proves if valid, 1 and the
    reason if not, 2 if nothing could be checked (no such file, no install)."""
    try:
        verified = verification.check(path, data_dir=config.data_dir)
    except verification.CannotVerify as e:
        return _fail(str(e))
    except verification.VerifyError as e:
        print(f"INVALID: {e}")
        return 1
    print("\n".join(verified.lines))
    return OK


def backup(config: Config, *, target: Path) -> int:
    """An archive of the install, consistent while it serves (takes no lock)."""
    try:
        manifest = create_backup(config, target.resolve())
    except BackupError as e:
        return _fail(str(e))
    except OSError as e:  # e.g. a folder the service user may not write to
        return _fail(f"cannot write {target}: {e.strerror or e}")
    files = manifest["files"]
    assert isinstance(files, dict)
    # Since schema 4 sealed file contents are rows of the database; blob files only on older installs.
    old_blobs = sum(1 for name in files if name.startswith("blobs/"))
    print(f"Wrote {target}: the database (schema {manifest['schema']}) with the sealed file contents, keys "
          "and settings" + (f", and {old_blobs} sealed file(s) from before schema 4." if old_blobs else "."))
    print("It holds the onion service and signing keys as the server's disk does: keep it as safe as that disk.")
    return OK


def restore(config: Config, *, archive: Path) -> int:
    """Unpack an archive into an empty data folder, checked before anything is placed."""
    try:
        with locked_if_present(config):
            restore_backup(archive.resolve(), config)
    except RestoreError as e:
        return _fail(str(e))
    except OSError as e:  # e.g. a folder the service user may not create (make it empty for them first)
        return _fail(f"cannot restore into {config.data_dir}: {e.strerror or e}"
                     + (f" ({e.filename})" if e.filename else ""))
    print(f"Restored {archive} into {config.data_dir}; every member matched the manifest and the "
          "database passed its integrity check.")
    if needs_migration_after_restore(config):
        print(f"The database is at an older schema: run python run.py migrate --data {config.data_dir}")
    return OK


@contextlib.contextmanager
def locked_if_present(config: Config) -> Iterator[None]:
    """The lock of an existing (empty) data folder, so no server starts on it mid-restore."""
    if config.data_dir.is_dir():
        with locked(config):
            yield
    else:
        yield


def status(config: Config, *, settings_problems: list[str]) -> int:
    """Print every health check; 1 if any failed (for monitoring), else 0."""
    checks = check_all(config, settings_problems=settings_problems)
    for check in checks:
        print(f"{check.level:<4} {check.name:<9} {check.text}")
    return 1 if any(c.level is Level.FAIL for c in checks) else OK


async def statistics_csv(config: Config, *, year: int, channel_id: str | None) -> int:
    """Print the year's statistics records as CSV (the admin page's download). Read-only: no lock."""
    try:
        statistics.check_year(year)
    except statistics.InvalidYear as e:
        raise CommandError(f"--year {year}: give a year from {statistics.FIRST_YEAR} to "
                           f"{statistics.LAST_YEAR}") from e
    async with _opened(config, write=False) as (store, _):
        if channel_id is not None and channel_id not in {c.id for c in await store.channels()}:
            raise CommandError(f"--channel {channel_id}: no such channel (see `run.py channel list`)")
        rows = await statistics.records(store=store, year=year, channel_id=channel_id)
    sys.stdout.write(statistics.to_csv(rows))
    return OK


async def channel_list(config: Config) -> int:
    async with _opened(config, write=False) as (store, _):
        channels = await store.channels()
        members = {c.id: len(await store.channel_members(c.id)) for c in channels}
    for c in channels:
        print(f"{c.id:<24} {c.name}  retention: {c.retention_days} days  caseworkers: {members[c.id]}"
              f"{'  [default]' if c.is_default else ''}")
    return OK
