"""The floor's actor: ``python -m benchmarks._floor_server SOCKET_PATH``.

Imports only the standard library and uvloop (numpy is loaded by pickle
when an array arrives). Prints ``ready`` once it listens and exits when its
client disconnects.
"""

from __future__ import annotations

import sys

from benchmarks._floor_proto import serve_path

if __name__ == "__main__":
    serve_path(sys.argv[1])
