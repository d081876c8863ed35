"""`chalice local`, with a listen backlog sized for the frontend's bursts.

The frontend posts one reading per sensor at once (up to 100 in parallel), and
the stock server's backlog of 5 pending connections resets the rest. API
Gateway has no such limit, so locally neither should we. Arguments are those of
`chalice local`.
"""

from __future__ import annotations

import sys

LISTEN_BACKLOG = 256


def main() -> int:
    args = sys.argv[1:]
    # Chalice's autoreloader restarts the server with sys.argv: make that this module again.
    sys.argv = [sys.executable, "-m", "iot_playground.chalice_local", *args]

    from chalice.cli import cli
    from chalice.local import ThreadedHTTPServer

    ThreadedHTTPServer.request_queue_size = LISTEN_BACKLOG
    result: int = cli.main(args=["local", *args], obj={}, standalone_mode=False) or 0
    return result


if __name__ == "__main__":
    sys.exit(main())
