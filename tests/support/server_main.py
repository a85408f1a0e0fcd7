"""Test-only launcher: `python -m tests.support.server_main --data D --port P --admin-port Q [--config JSON]`.

It does what `python run.py serve --no-tor` does (same logging set-up, same `dropbox.web.server.serve`),
but builds the Config with `config_for_tests`, so the crash and load tests can run thousands of
receipt derivations at libsodium's minimum Argon2id cost. Production code has deliberately no
switch for that; this module lives under tests/ and is never imported by the server.

`--config` takes a JSON object of further Config fields (e.g. {"kdf_queue_limit": 8}).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from dropbox.config import config_for_tests
from dropbox.web.server import serve


def main() -> int:
    parser = argparse.ArgumentParser(prog="tests.support.server_main")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--config", default="{}", help="JSON object of extra Config fields")
    args = parser.parse_args()
    changes = json.loads(args.config)
    config = config_for_tests(args.data, port=args.port, admin_port=args.admin_port, **changes)
    # Exactly run.py's logging set-up, so the leak tests see what production would log.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(serve(config, tor=False))


if __name__ == "__main__":
    sys.exit(main())
