"""Start both embedded servers, print their pids as one JSON line, then block.

Run by test_embedded_servers.py, which SIGKILLs this process to check no server outlives it.
"""

import asyncio
import json
import sys
from pathlib import Path

import structlog

from infra.embedded import EmbeddedNats, EmbeddedPostgres


async def main(data_dir: Path) -> None:
    nats = EmbeddedNats(data_dir / "nats")
    postgres = EmbeddedPostgres(data_dir / "postgres")
    await nats.start()
    await postgres.start()
    print(json.dumps({"nats": nats.pid, "postgres": postgres.pid}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(main(Path(sys.argv[1])))
