"""Figures for the sealed core: Argon2id cost at production parameters and secretstream throughput.

Run: .venv/bin/python -m bench.core   (prints a table; not part of the test suite)
"""

from __future__ import annotations

import argparse
import statistics
import time

from argon2.low_level import Type, hash_secret_raw

from dropbox.config import MiB, PRODUCTION_KDF_MEM, PRODUCTION_KDF_OPS
from dropbox.sealing import FileSealer, KdfParams, ReceiptCode, derive_receipt_keys, new_file_key, new_receipt


def _time(fn: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def argon2_figures(repeat: int) -> dict[str, float]:
    kdf = KdfParams.fresh(ops=PRODUCTION_KDF_OPS, mem=PRODUCTION_KDF_MEM)
    code: ReceiptCode = new_receipt()
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
