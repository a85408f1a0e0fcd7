"""A full disk, for real: the database refused room to grow, or a small filesystem to fill or break.

`database_full(store)` makes SQLite's own pager answer SQLITE_FULL between two of the store's
transactions (`PRAGMA max_page_count`), for in-process tests.

`loop_disk()`: an ext4 image on a loop device (root only): `fill()` leaves a chosen number of bytes free with a
filler file, `release()` gives the space back, `fail_read_only()` makes the kernel turn the
filesystem read-only at once (ext4's `trigger_fs_error` with `errors=remount-ro`: what happens
when a disk starts failing; unlike `mount -o remount,ro` it also works while files are open for
writing), and `repair()` unmounts, runs e2fsck and mounts it again as an operator would.
Everything is unmounted and detached on the way out, whatever happened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from dropbox.storage import Store

MiB = 1024 * 1024


class DiskUnavailable(Exception):
    """This machine cannot give the test a filesystem of its own (not root, no loop device)."""


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise DiskUnavailable(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return done


class LoopDisk:
    def __init__(self, image: Path, mountpoint: Path, size_mib: int) -> None:
        self.image = image
        self.mountpoint = mountpoint
        self.size_mib = size_mib
        self.filler = mountpoint / "filler"
        self.device: str | None = None

    def create(self) -> None:
        if os.geteuid() != 0:
            raise DiskUnavailable("the disk-trouble tests mount a filesystem and need root "
                                  "(CI runs as root; run them with sudo)")
        for tool in ("mkfs.ext4", "losetup", "mount", "umount", "e2fsck"):
            if shutil.which(tool) is None:
                raise DiskUnavailable(f"{tool} not found (apt-get install e2fsprogs mount)")
        self.image.parent.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(self.size_mib * MiB)
        # -m 0: no blocks reserved for root, so "full" means full for this (root) process too.
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(self.image))
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.device = _run("losetup", "--find", "--show", str(self.image)).stdout.strip()
        self._mount()

    def _mount(self) -> None:
        assert self.device is not None
        _run("mount", "-t", "ext4", "-o", "errors=remount-ro", self.device, str(self.mountpoint))

    def free_bytes(self) -> int:
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize

    def fill(self, *, leave_bytes: int) -> None:
        """Grow the filler file until only about `leave_bytes` remain free."""
        with open(self.filler, "ab") as f:
            block = b"\0" * MiB
            while (free := self.free_bytes()) > leave_bytes:
                step = min(len(block), free - leave_bytes)
                try:
                    f.write(block[: max(step, 4096)])
                    f.flush()
                    os.fsync(f.fileno())
                except OSError:
                    break

    def release(self) -> None:
        """Space returns: remove the filler."""
        self.filler.unlink(missing_ok=True)
        os.sync()

    @property
    def _sysfs(self) -> Path:
        assert self.device is not None
        return Path("/sys/fs/ext4") / Path(self.device).name

    def fail_read_only(self) -> None:
        """The disk turns read-only under the running server, open files included."""
        (self._sysfs / "trigger_fs_error").write_text("1")
        deadline = time.monotonic() + 10
        while not self.is_read_only():
            if time.monotonic() > deadline:
                raise AssertionError("ext4 did not turn read-only after trigger_fs_error")
            time.sleep(0.01)

    def is_read_only(self) -> bool:
        """ext4's emergency read-only does not show in statvfs flags; a write attempt tells."""
        probe = self.mountpoint / ".probe"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as e:
            return e.errno == errno.EROFS
        os.close(fd)
        probe.unlink()
        return False

    def repair(self) -> None:
        """What an operator does after a disk error: unmount, e2fsck, mount again (read-write)."""
        try:
            _run("umount", str(self.mountpoint))
        except DiskUnavailable as e:
            holders = subprocess.run(["fuser", "-vm", str(self.mountpoint)], capture_output=True, text=True,
                                     check=False)
            raise AssertionError(f"{e}\nstill using it:\n{holders.stdout}{holders.stderr}") from e
        subprocess.run(["e2fsck", "-f", "-y", str(self.device)], capture_output=True, check=False, timeout=60)
        self._mount()

    def destroy(self) -> None:
        if os.path.ismount(self.mountpoint):
            done = subprocess.run(["umount", str(self.mountpoint)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, check=False)
        if self.device is not None:
            subprocess.run(["losetup", "-d", self.device], capture_output=True, check=False)
            self.device = None
        self.image.unlink(missing_ok=True)


@contextlib.contextmanager
def loop_disk(folder: Path, *, size_mib: int = 48) -> Iterator[LoopDisk]:
    disk = LoopDisk(folder / "disk.img", folder / "mnt", size_mib)
    try:
        disk.create()
        yield disk
    finally:
        disk.destroy()


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
