"""``python -m reference --port P --dir D [--appendfsync always|everysec|no] ...``.

Serves the reference AOF server over RESP on 127.0.0.1 (see ``reference._net``); usable with
redis-cli, redis-py and the harness's real-process tooling. ``--help`` lists the options.
"""

from __future__ import annotations

from reference._net import main

if __name__ == "__main__":
    raise SystemExit(main())
