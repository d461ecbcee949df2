"""The ``actorloop`` command: start, stop, status and list the node of this user."""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
import uuid
from typing import Any, Callable

from ._connection import SyncNodeChannel
from ._node import default_daemon_dir, node_running, prepare_dir, read_secret, start_node_process


class _CliError(Exception):
    pass


def _connect(node_dir: str) -> SyncNodeChannel:
    try:
        # Checks the directory, the socket and the secret before connecting.
        running = node_running(node_dir)
    except OSError as exc:
        raise _CliError(str(exc)) from exc
    if not running:
        raise _CliError(f"no actorloop node is running at {node_dir} (start one with `actorloop start`)")
    try:
        secret = read_secret(node_dir)
        return SyncNodeChannel(
            os.path.join(node_dir, "node.sock"), secret, ("hello", uuid.uuid4().hex, "cli", os.getpid(), False, "")
        )
    except (ConnectionError, OSError) as exc:
        raise _CliError(str(exc)) from exc


def cmd_start(node_dir: str, dashboard: tuple[str, int] | None = None) -> None:
    try:
        # First: a squatted or symlinked directory is refused, never taken for a running node.
        prepare_dir(node_dir)
        running = node_running(node_dir)
        if not running:
            lock = os.open(
                os.path.join(node_dir, "start.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
    except OSError as exc:
        raise _CliError(f"cannot start a node at {node_dir}: {exc}") from exc
    if running:
        raise _CliError(f"a node is already running at {node_dir}")
    try:
        # Two `actorloop start` at once: the second waits here, then finds the first's node
        # (without the lock both would start one, and the loser's node would run on unreachable).
        fcntl.flock(lock, fcntl.LOCK_EX)
        if node_running(node_dir):
            raise _CliError(f"a node is already running at {node_dir}")
        try:
            proc = start_node_process(node_dir, embedded=False, log_path=os.path.join(node_dir, "node.log"))
        except (OSError, RuntimeError) as exc:
            raise _CliError(f"cannot start a node at {node_dir}: {exc}") from exc
    finally:
        os.close(lock)
    dashboard_url = _start_dashboard(node_dir, dashboard, proc) if dashboard is not None else None
    print(node_dir)
    print(
        f'actorloop node started (pid {proc.pid}); connect with actorloop.init(address="auto") '
        f"or ACTORLOOP_ADDRESS={node_dir}",
        file=sys.stderr,
    )
    if dashboard_url is not None:
        print(f"dashboard: {dashboard_url} (metrics: {dashboard_url}/metrics)", file=sys.stderr)


def _start_dashboard(node_dir: str, dashboard: tuple[str, int], proc: Any) -> str:
    """Ask the node just started for its dashboard; if that fails, stop the node and say why."""
    channel = _connect(node_dir)
    try:
        url: str = channel.request("dashboard", *dashboard)
        return url
    except Exception as exc:
        try:
            channel.request("stop")
            proc.wait(timeout=15)
        except Exception:
            pass
        raise _CliError(f"cannot start the dashboard: {exc} (the node started for it was stopped)") from exc
    finally:
        channel.close()


def _dashboard_port(text: str) -> int:
    """argparse type of --dashboard-port: a port number, 0 for a free one."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535; 0 picks a free port)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535; 0 picks a free port)")
    return port


def cmd_stop(node_dir: str) -> None:
    channel = _connect(node_dir)
    try:
        status = channel.request("status")
        channel.request("stop")
    finally:
        channel.close()
    pid = status["pid"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        raise _CliError(f"the node (pid {pid}) did not stop within 15 s")
    print(f"stopped the actorloop node at {node_dir}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def cmd_status(node_dir: str) -> None:
    channel = _connect(node_dir)
    try:
        status = channel.request("status")
    finally:
        channel.close()
    states = status["actors"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    print(f"address: {status['address']}")
    print(f"pid:     {status['pid']}")
    print(f"uptime:  {_duration(status['uptime'])}")
    print(f"actors:  {counts}")


def _duration(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


def cmd_list(node_dir: str) -> None:
    channel = _connect(node_dir)
    try:
        actors = channel.request("list")
    finally:
        channel.close()
    header = ["ACTOR_ID", "CLASS", "NAME", "NAMESPACE", "STATE", "PID", "RESTARTS", "DETACHED", "DEATH_CAUSE"]
    rows: list[list[Any]] = [header]
    for a in actors:
        cause = getattr(a, "death_cause", None)  # None from a node older than this CLI
        rows.append(
            [
                a.actor_id,
                a.class_name,
                a.name or "-",
                a.namespace or "-",
                a.state,
                a.pid or "-",
                a.restarts,
                a.detached,
                _one_line(cause) if cause else "-",
            ]
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


#: The longest death cause `actorloop list` prints; list_actors() has the whole text.
_MAX_CAUSE = 100


def _one_line(text: str) -> str:
    """A death cause on one line: a constructor's traceback is cut to its first and last lines."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "-"
    line = lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"
    return line if len(line) <= _MAX_CAUSE else line[: _MAX_CAUSE - 3] + "..."


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``actorloop`` and ``python -m actorloop``."""
    parser = argparse.ArgumentParser(
        prog="actorloop", description="Run and inspect this user's actorloop node ($ACTORLOOP_DIR moves it)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a node in the background and print its address")
    start.add_argument(
        "--dashboard-port",
        type=_dashboard_port,
        default=None,
        metavar="N",
        help="serve /metrics (Prometheus), /api/actors and a live dashboard on this TCP port (0: a free one); "
        "off unless given",
    )
    start.add_argument(
        "--dashboard-host",
        default=None,
        metavar="HOST",
        help="address the dashboard listens on (default 127.0.0.1; anything else exposes it to the network)",
    )
    sub.add_parser("stop", help="stop the node and every actor, detached ones too")
    sub.add_parser("status", help="show the node's address, pid, uptime and actors by state")
    sub.add_parser("list", help="list every actor of every namespace")
    args = parser.parse_args(argv)
    node_dir = default_daemon_dir()
    commands: dict[str, Callable[[str], None]] = {
        "start": cmd_start,
        "stop": cmd_stop,
        "status": cmd_status,
        "list": cmd_list,
    }
    if args.command == "start" and (args.dashboard_port is not None or args.dashboard_host is not None):
        if args.dashboard_port is None:
            parser.error("--dashboard-host needs --dashboard-port")
        dashboard = (args.dashboard_host or "127.0.0.1", args.dashboard_port)
        commands["start"] = lambda d: cmd_start(d, dashboard)
    try:
        commands[args.command](node_dir)
    except _CliError as exc:
        print(f"actorloop {args.command}: {exc}", file=sys.stderr)
        sys.exit(1)
