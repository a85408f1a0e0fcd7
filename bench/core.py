"""Figures for the sealed core: Argon2id cost at production parameters and secretstream throughput.

Run: .venv/bin/python -m bench.core   (prints a table; not part of the test suite)
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from pathlib import Path

import nacl.bindings as sodium
from argon2.low_level import Type, hash_secret_raw

from dropbox.config import PRODUCTION_KDF_MEM, PRODUCTION_KDF_OPS, MiB
from dropbox.sealing import FileSealer, KdfParams, derive_receipt_keys, draw_receipt_secret, new_file_key


def _time(fn: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def argon2_figures(repeat: int) -> dict[str, float]:
    kdf = KdfParams.fresh(ops=PRODUCTION_KDF_OPS, mem=PRODUCTION_KDF_MEM)
    code = draw_receipt_secret(ops=kdf.ops, mem=kdf.mem).secret
    sodium = _time(lambda: derive_receipt_keys(code, kdf=kdf), repeat)
    reference = _time(lambda: hash_secret_raw(code.encode(), kdf.salt, time_cost=kdf.ops,
                                              memory_cost=kdf.mem // 1024, parallelism=1, hash_len=32,
                                              type=Type.ID), repeat)
    return {"argon2id_libsodium_ms": statistics.median(sodium) * 1000,
            "argon2id_argon2_cffi_ms": statistics.median(reference) * 1000}


def secretstream_figures(total_mib: int, chunk: int = MiB) -> dict[str, float]:
    sealer = FileSealer(file_key=new_file_key(), file_id="bench")
    data = bytes(chunk)
    start = time.perf_counter()
    for _ in range(total_mib * MiB // chunk):
        sealer.push(data)
    sealer.finish()
    elapsed = time.perf_counter() - start
    return {"secretstream_mib_s": total_mib / elapsed}


def secretstream_over_file(path: Path, *, length: int, chunk: int = MiB) -> dict[str, float]:
    """Seal the first `length` bytes of `path` in `chunk`s; only the sealing is timed, not the reads.

    Two figures: libsodium's push alone (the ceiling for sealing) and `FileSealer.push`, which
    adds the drop box's framing, so a gap between them is the framing's cost. Runs in a worker
    thread, as the server seals (its allocations then come from a thread arena; in the main
    thread each 1 MiB frame costs ~480 page faults, which would understate FileSealer).
    """
    figures: dict[str, float] = {}
    worker = threading.Thread(target=lambda: figures.update(_seal_file(path, length, chunk)), name="seal")
    worker.start()
    worker.join()
    return figures


def _seal_file(path: Path, length: int, chunk: int) -> dict[str, float]:
    key = new_file_key()
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    sealer = FileSealer(file_key=key, file_id="0" * 32)
    ad = b"file:" + b"0" * 32
    spent = {"libsodium": 0.0, "sealer": 0.0}
    fd = os.open(path, os.O_RDONLY)
    try:
        for position in range(0, length, chunk):
            data = os.pread(fd, min(chunk, length - position), position)
            start = time.perf_counter()
            sodium.crypto_secretstream_xchacha20poly1305_push(state, data, ad, 0)
            middle = time.perf_counter()
            sealer.push(data)
            spent["libsodium"] += middle - start
            spent["sealer"] += time.perf_counter() - middle
    finally:
        os.close(fd)
    return {"libsodium_push_mib_s": length / MiB / spent["libsodium"],
            "filesealer_push_mib_s": length / MiB / spent["sealer"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    figures = {**argon2_figures(args.repeat), **secretstream_figures(args.mib)}
    print(f"Argon2id t={PRODUCTION_KDF_OPS} m={PRODUCTION_KDF_MEM // MiB} MiB, median of {args.repeat}:")
    print(f"  libsodium (PyNaCl, used)     {figures['argon2id_libsodium_ms']:8.0f} ms")
    print(f"  argon2-cffi (reference)      {figures['argon2id_argon2_cffi_ms']:8.0f} ms")
    print(f"secretstream seal, 1 MiB chunks, {args.mib} MiB: {figures['secretstream_mib_s']:8.0f} MiB/s (one core)")


if __name__ == "__main__":
    main()
