"""``python -m actorloop``: the command line."""

from ._cli import main

main()
