"""The ``actorloop`` command: start, stop, status, list, kill and logs of this user's nodes.

A command without ``--address`` works on the node ``actorloop start`` runs
(``$ACTORLOOP_DIR``, or ``$ACTORLOOP_ADDRESS`` when set); when none runs,
``status`` shows the embedded nodes of this user's running drivers (found in
the registry of ``_node/_registry.py``) and ``list``, ``kill`` and ``logs``
use the embedded node if exactly one runs.  ``--address DIR`` names any node.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
import uuid
from typing import Any

from ._connection import SyncNodeChannel
from ._node import default_daemon_dir, node_running, prepare_dir, read_secret, start_node_process
from ._node._logs import KeptParser, json_head, json_line
from ._node._registry import EmbeddedEntry, embedded_nodes

#: The states an actor can be in, for ``list --state``.
STATES = ("STARTING", "ALIVE", "RESTARTING", "DEAD")
#: How often ``logs -f`` looks for new output, and asks the node whether the actor still runs.
_FOLLOW_POLL = 0.1
_FOLLOW_STATE_EVERY = 5


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


def _request(node_dir: str, *msg: Any) -> Any:
    channel = _connect(node_dir)
    try:
        return channel.request(*msg)
    except (ConnectionError, OSError) as exc:
        raise _CliError(f"the node at {node_dir} stopped answering: {exc}") from exc
    finally:
        channel.close()


def _embedded(daemon_dir: str) -> list[EmbeddedEntry]:
    """This user's embedded nodes that answer (a registry someone else could control is refused)."""
    try:
        return [e for e in embedded_nodes(daemon_dir) if _answers(e.dir)]
    except OSError as exc:
        raise _CliError(str(exc)) from exc


def _answers(node_dir: str) -> bool:
    try:
        return node_running(node_dir)
    except OSError:
        return False  # an entry pointing at a directory we do not trust is not shown


def _default_node(address: str | None) -> str:
    """The node a command works on: ``--address``, ``$ACTORLOOP_ADDRESS``, the daemon, or the only embedded node."""
    if address:
        return os.path.abspath(address)
    env = os.environ.get("ACTORLOOP_ADDRESS")
    if env:
        return os.path.abspath(env)
    daemon = default_daemon_dir()
    try:
        if node_running(daemon):
            return daemon
    except OSError as exc:
        raise _CliError(str(exc)) from exc
    found = _embedded(daemon)
    if len(found) == 1:
        return found[0].dir
    if not found:
        raise _CliError(
            f"no actorloop node is running at {daemon} and no script runs an embedded one "
            "(start one with `actorloop start`)"
        )
    listed = ", ".join(f"{e.dir} (driver pid {e.driver})" for e in found)
    raise _CliError(f"no node runs at {daemon} but {len(found)} embedded nodes do: {listed}; pick one with --address")


# -- start / stop ------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> None:
    node_dir = default_daemon_dir()
    dashboard = (args.dashboard_host or "127.0.0.1", args.dashboard_port) if args.dashboard_port is not None else None
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
            proc = start_node_process(
                node_dir, embedded=False, log_path=os.path.join(node_dir, "node.log"), log_format=args.log_format
            )
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


def cmd_stop(args: argparse.Namespace) -> None:
    if args.address:
        node_dir = os.path.abspath(args.address)
    else:
        node_dir = default_daemon_dir()
        try:
            running = node_running(node_dir)
        except OSError as exc:
            raise _CliError(str(exc)) from exc
        if not running:
            # As `ray stop`: nothing to stop is not a failure.  Embedded nodes belong to
            # their scripts; they are stopped only when named.
            others = _embedded(node_dir)
            note = f"; {len(others)} embedded node(s) of running scripts left alone (see `actorloop status`)"
            print(f"no actorloop node is running at {node_dir}{note if others else ''}")
            return
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


# -- status ------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> None:
    if args.address or os.environ.get("ACTORLOOP_ADDRESS"):
        _print_status(_default_node(args.address), _request(_default_node(args.address), "status"))
        return
    daemon = default_daemon_dir()
    try:
        daemon_running = node_running(daemon)
    except OSError as exc:
        raise _CliError(str(exc)) from exc
    found = _embedded(daemon)
    if not daemon_running and not found:
        raise _CliError(
            f"no actorloop node is running at {daemon} and no script runs an embedded one "
            "(start one with `actorloop start`)"
        )
    first = True
    for node_dir in ([daemon] if daemon_running else []) + [e.dir for e in found]:
        try:
            status = _request(node_dir, "status")
        except _CliError:
            continue  # ended since it was found
        if not first:
            print()
        first = False
        _print_status(node_dir, status)


def _print_status(node_dir: str, status: dict[str, Any]) -> None:
    states = status["actors"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    print(f"address: {status['address']}")
    print(f"pid:     {status['pid']}")
    if status.get("embedded"):
        driver = status.get("driver")
        print(f"kind:    embedded in the driver pid {driver}{_command_of(driver)}")
    else:
        print("kind:    daemon (actorloop start)")
    print(f"uptime:  {_duration(status['uptime'])}")
    print(f"actors:  {counts}")
    if status.get("dashboard_url"):
        print(f"dashboard: {status['dashboard_url']} (metrics: {status['dashboard_url']}/metrics)")


def _command_of(pid: object) -> str:
    """`` (python job.py)``: the command line of a driver, to tell scripts apart; empty if unknown."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:  # type: ignore[call-overload]
            words = [w.decode("utf-8", "replace") for w in f.read().split(b"\0") if w]
    except (OSError, TypeError, ValueError):
        return ""
    if not words:
        return ""
    # The interpreter's path says little; the script, at the end, says most: keep the end.
    text = " ".join([os.path.basename(words[0]), *words[1:]])
    return f" ({text if len(text) <= 80 else '...' + text[-77:]})"


def _duration(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


# -- list ----------------------------------------------------------------------------


def _actors(node_dir: str) -> list[dict[str, Any]]:
    return list(_request(node_dir, "actors"))


def cmd_list(args: argparse.Namespace) -> None:
    actors = _actors(_default_node(args.address))
    if args.state:
        wanted = args.state.upper()
        if wanted not in STATES:
            raise _CliError(f"unknown state {args.state!r}; choose one of {', '.join(STATES)}")
        actors = [a for a in actors if a["state"] == wanted]
    if args.namespace is not None:
        actors = [a for a in actors if a["namespace"] == args.namespace]
    if args.class_name is not None:
        actors = [a for a in actors if a["class_name"] == args.class_name]
    if args.json:
        keys = ("actor_id", "class_name", "name", "namespace", "state", "pid", "restarts", "detached", "http_url")
        print(json.dumps([{**{k: a[k] for k in keys}, "death_cause": a["death_cause"]} for a in actors], indent=2))
        return
    header = ["ACTOR_ID", "CLASS", "NAME", "NAMESPACE", "STATE", "PID", "RESTARTS", "DETACHED", "HTTP_URL"]
    header.append("DEATH_CAUSE")
    rows: list[list[Any]] = [header]
    for a in actors:
        cause = a["death_cause"]
        rows.append(
            [
                a["actor_id"],
                a["class_name"],
                a["name"] or "-",
                a["namespace"] or "-",
                a["state"],
                a["pid"] or "-",
                a["restarts"],
                a["detached"],
                a["http_url"] or "-",
                _one_line(cause) if cause else "-",
            ]
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


#: The longest death cause `actorloop list` prints; list_actors() and `list --json` have the whole text.
_MAX_CAUSE = 100


def _one_line(text: str) -> str:
    """A death cause on one line: a constructor's traceback is cut to its first and last lines."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "-"
    line = lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"
    return line if len(line) <= _MAX_CAUSE else line[: _MAX_CAUSE - 3] + "..."


# -- kill and logs: one actor by name ---------------------------------------------


def _find_actor(actors: list[dict[str, Any]], name: str, namespace: str | None) -> dict[str, Any]:
    """The actor named ``name`` (or with that id), preferring a live one over dead ones of the same name."""
    by_id = [a for a in actors if a["actor_id"] == name]
    if by_id:
        return by_id[0]
    named = [a for a in actors if a["name"] == name and (namespace is None or a["namespace"] == namespace)]
    if not named:
        where = f" in namespace {namespace!r}" if namespace is not None else ""
        raise _CliError(f"no actor named {name!r}{where} (see `actorloop list`)")
    live = [a for a in named if a["state"] != "DEAD"]
    spaces = sorted({a["namespace"] for a in (live or named)})
    if len(spaces) > 1:
        raise _CliError(
            f"actors named {name!r} exist in several namespaces ({', '.join(spaces)}); pick one with --namespace"
        )
    return (live or named)[-1]  # the node lists in creation order: the newest dead one


def cmd_kill(args: argparse.Namespace) -> None:
    node_dir = _default_node(args.address)
    actor = _find_actor(_actors(node_dir), args.name, args.namespace)
    if actor["state"] == "DEAD":
        raise _CliError(f"the actor {args.name!r} ({actor['actor_id']}) is already dead: {actor['death_cause']}")
    _request(node_dir, "kill", actor["actor_id"], not args.allow_restart, "it was killed with `actorloop kill`")
    print(f"killed the actor {actor['class_name']} {args.name!r} ({actor['actor_id']})")


def cmd_logs(args: argparse.Namespace) -> None:
    node_dir = _default_node(args.address)
    actor = _find_actor(_actors(node_dir), args.name, args.namespace)
    path = os.path.join(node_dir, "logs", f"{actor['actor_id']}.log")
    reader = _LogReader(path, actor if args.json else None)
    polls = 0
    # Ctrl-C ends `logs -f` quietly wherever it lands, also in the first reads.
    try:
        reader.read_rotated()
        reader.read_new()
        if not args.follow:
            return
        while True:
            time.sleep(_FOLLOW_POLL)
            reader.read_new()
            polls += 1
            if polls % _FOLLOW_STATE_EVERY:
                continue
            try:
                now = {a["actor_id"]: a for a in _actors(node_dir)}.get(actor["actor_id"])
            except _CliError:
                now = None  # the node ended: so did the actor
            if now is None or (now["state"] == "DEAD" and now["output_closed"]):
                reader.read_new()
                return
    except KeyboardInterrupt:
        return
    finally:
        reader.close()


class _LogReader:
    """Prints an actor's kept log (see _node/_logs.py) and what is appended to it.

    Plain lines go to stdout or stderr as the actor wrote them; with the
    actor's description (``--json``) each becomes a JSON record on stdout.

    A file that passes its size limit is renamed ``.log.1`` by the node and a
    new one started: the reader notices the new inode, finishes the old
    file and goes on with the new one.
    """

    def __init__(self, path: str, json_of: dict[str, Any] | None) -> None:
        self.path = path
        self.json_of = json_of
        self.parser = KeptParser()
        self.fd: int | None = None
        self.ino: int | None = None
        self.pending = b""

    def read_rotated(self) -> None:
        fd = _open_log(self.path + ".1")
        if fd is not None:
            try:
                self._drain(fd)
            finally:
                os.close(fd)

    def read_new(self) -> None:
        if self.fd is not None:
            self._drain(self.fd)
            try:
                rotated = os.stat(self.path).st_ino != self.ino
            except FileNotFoundError:
                rotated = False  # removed with its dead actor: nothing more will come
            if not rotated:
                return
            self._drain(self.fd)  # what was written before the rename
            os.close(self.fd)
            self.fd = None
        self.fd = _open_log(self.path)
        if self.fd is not None:
            self.ino = os.fstat(self.fd).st_ino
            self._drain(self.fd)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _drain(self, fd: int) -> None:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data = self.pending + chunk
            lines = data.split(b"\n")
            self.pending = lines.pop()
            for line in lines:
                self._print(line)
        sys.stdout.flush()
        sys.stderr.flush()

    def _print(self, raw: bytes) -> None:
        record = self.parser.feed(raw.decode("utf-8", "replace"))
        if record is None:
            return
        t, pid, stream_no, text = record
        a = self.json_of
        if a is None:
            (sys.stderr if stream_no == 2 else sys.stdout).write(text + "\n")
            return
        head = json_head(
            t=t,
            actor_id=a["actor_id"],
            class_name=a["class_name"],
            name=a["name"],
            namespace=a["namespace"],
            pid=pid,
            stream_no=stream_no,
        )
        sys.stdout.write(json_line(head, text))


def _open_log(path: str) -> int | None:
    try:
        # The logs directory is inside the node directory _connect() checked; no links followed.
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _CliError(f"cannot read {path}: {exc.strerror}") from exc


# -- the command line ------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actorloop",
        description="Run and inspect this user's actorloop nodes ($ACTORLOOP_DIR moves the one `start` runs).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def address(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--address",
            metavar="DIR",
            help="the node's directory (an embedded node's, as `actorloop status` shows); "
            "default: the node `actorloop start` runs",
        )

    start = sub.add_parser("start", help="start a node in the background and print its address")
    start.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="how node.log shows detached actors' output: (Class pid=N) lines or one JSON object a line",
    )
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
    stop = sub.add_parser("stop", help="stop the node and every actor, detached ones too (no node: says so)")
    address(stop)
    status = sub.add_parser(
        "status", help="show address, pid, uptime and actors by state of the node and of running scripts' nodes"
    )
    address(status)
    ls = sub.add_parser("list", help="list the actors of every namespace")
    address(ls)
    ls.add_argument("--json", action="store_true", help="print a JSON array of objects instead of a table")
    ls.add_argument("--state", help=f"only actors in this state ({', '.join(STATES)})")
    ls.add_argument("--namespace", help="only actors of this namespace")
    ls.add_argument("--class", dest="class_name", metavar="CLASS", help="only actors of this class")
    kill = sub.add_parser("kill", help="kill an actor (at once, without running __ray_shutdown__)")
    kill.add_argument("name", metavar="NAME", help="the actor's name (or its id, as `actorloop list` shows)")
    kill.add_argument("--namespace", help="the actor's namespace, when several namespaces have the name")
    kill.add_argument("--allow-restart", action="store_true", help="let max_restarts restart it")
    address(kill)
    logs = sub.add_parser("logs", help="print an actor's output (stdout and stderr)")
    logs.add_argument("name", metavar="NAME", help="the actor's name (or its id, as `actorloop list` shows)")
    logs.add_argument("--namespace", help="the actor's namespace, when several namespaces have the name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the actor ends or Ctrl-C")
    logs.add_argument("--json", action="store_true", help="print the kept JSON records (time, stream, pid, ...)")
    address(logs)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``actorloop`` and ``python -m actorloop``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "start" and args.dashboard_host is not None and args.dashboard_port is None:
        parser.error("--dashboard-host needs --dashboard-port")
    commands = {
        "start": cmd_start,
        "stop": cmd_stop,
        "status": cmd_status,
        "list": cmd_list,
        "kill": cmd_kill,
        "logs": cmd_logs,
    }
    try:
        commands[args.command](args)
    except _CliError as exc:
        print(f"actorloop {args.command}: {exc}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        # `actorloop logs NAME | head`: the reader left; not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
