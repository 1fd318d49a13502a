"""``almost-raft run``: one node of a real cluster, over TCP, with a durable state file.

The node logs every leadership change, optionally serves ``/status`` and ``/metrics``,
and optionally runs a command only while it is leader (by default only while it holds a
lease, with a watchdog process that stops the command at the lease's end). SIGTERM or
SIGINT shut it down cleanly: the command is stopped, the node leaves the election, the
state is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from ..core._errors import ConfigError
from ..core._outputs import LeaderChange
from ..runtime._election import Election
from ..store._store import FileStore
from ..transport.tcp._settings import timeouts_for_election
from ..transport.tcp._transport import TcpTransport
from ._cluster_config import ClusterConfig, NodeEntry, format_host_port, parse_host_port
from ._field_errors import MissingField
from ._startup_checks import (
    check_can_listen,
    check_leader_command,
    check_state_dir,
    listen_error,
)

if TYPE_CHECKING:
    from ._admin import AdminServer
    from ._http import StatusServer
    from ._leader_command import LeaderCommand
    from ._supervisor import CommandSupervisor, OnCommandExit
    from ._watchdog import Watchdog

__all__ = ["RunOptions", "run_node"]

logger = logging.getLogger("almost_raft.node")


@dataclasses.dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``almost-raft run`` was asked to do."""

    config_path: str
    node_id: str
    state_dir: str | None = None
    http: tuple[str, int] | None = None
    command: tuple[str, ...] = ()
    grace: float = 10.0
    on_command_exit: OnCommandExit = "step-down"
    exclusive: bool = True


class _Node:
    def __init__(self, options: RunOptions, cluster: ClusterConfig, entry: NodeEntry) -> None:
        self.options = options
        self.cluster = cluster
        self.entry = entry
        state_dir = cluster.state_dir if options.state_dir is None else options.state_dir
        if state_dir is None:
            raise MissingField(
                f"{cluster.source}: state_dir",
                "set state_dir in the cluster file or pass --state-dir: the node must keep "
                "its term and vote on disk to never vote twice in one term",
            )
        check_state_dir(
            f"{cluster.source}: state_dir" if options.state_dir is None else "--state-dir",
            state_dir,
        )
        if options.command:
            check_leader_command(options.command)
        self.state_path = os.path.join(state_dir, f"{entry.node_id}.state")
        peers = cluster.peers_of(entry.node_id)
        tls_files = cluster.security.tls.get(entry.node_id)
        tls = None if tls_files is None else tls_files.load(cluster.source, entry.node_id)
        secret = cluster.security.load_secret(cluster.source)
        self.transport = TcpTransport(
            listen=entry.address,
            peers=peers,
            cluster_id=cluster.cluster_id,
            tls=tls,
            secret=secret,
            **timeouts_for_election(cluster.election),
        )
        self.election = Election(
            entry.node_id,
            sorted(peers),
            self.transport,
            config=cluster.election,
            store=FileStore(self.state_path, node_id=entry.node_id, cluster_id=cluster.cluster_id),
        )
        # The command's and the HTTP server's modules are imported only by a node that
        # uses them: whatever a node imports stays in its memory for its whole life.
        self.command: LeaderCommand | None = None
        if options.command:
            from ._leader_command import LeaderCommand

            self.command = LeaderCommand(
                options.command, node_id=entry.node_id, grace=options.grace
            )
        self.http: StatusServer | None = None
        http = options.http or entry.http
        self._http_field = (
            "--http"
            if options.http is not None
            else f"{cluster.source}: nodes.{entry.node_id}.http"
        )
        self._http_address = http
        if options.http is not None:
            _check_http_option(cluster, entry.node_id, options.http)
        if http is not None:
            from ._http import StatusServer, json_route

            self.http = StatusServer(
                http[0],
                http[1],
                {"/status": json_route(self.status), "/metrics": self._metrics_route},
            )
        self.watchdog: Watchdog | None = None
        self._supervisor: CommandSupervisor | None = None
        self._supervising: asyncio.Task[None] | None = None
        self.admin: AdminServer | None = None
        if entry.admin is not None:
            from ._admin import AdminServer

            self.admin = AdminServer(
                entry.admin[0],
                entry.admin[1],
                self.election,
                cluster.cluster_id,
                secret,
                None if tls is None else tls.server,
            )

    def status(self) -> dict[str, Any]:
        status = self.election.status()
        return {
            "id": status.node_id,
            "cluster": self.cluster.cluster_id,
            "term": status.term,
            "role": status.role.value,
            "leader": status.leader_id,
            "voted_for": status.voted_for,
            "peers": {
                peer: {
                    "address": format_host_port(self.cluster.nodes[peer].address),
                    "last_heard_seconds": status.last_heard.get(peer),
                }
                for peer in sorted(status.peers)
                if peer in self.cluster.nodes
            },
            "configuration": None
            if status.configuration is None
            else {
                "version": status.configuration.version,
                "term": status.configuration.term,
                "committed_version": status.committed_version,
                "committed": 0 < status.configuration.version <= status.committed_version,
                "change_pending": status.change_pending,
                "members": {
                    m.node_id: {"voter": m.voter, "address": m.address}
                    for m in status.configuration.members
                },
            },
            "command": None
            if self.command is None
            else {
                "running": self.command.running,
                "pid": self.command.pid,
                "term": self.command.term,
                "starts": self.command.starts,
                "lease_lapses": 0 if self._supervisor is None else self._supervisor.lease_lapses,
                "exits": 0 if self._supervisor is None else self._supervisor.exits,
            },
        }

    def _metrics_route(self) -> tuple[int, str, bytes]:
        from ._prometheus import metrics_text

        supervisor = self._supervisor
        body = metrics_text(
            self.election,
            lambda: self.transport.metrics,
            None if supervisor is None else supervisor.counts,
        )
        return 200, "text/plain; version=0.0.4; charset=utf-8", body

    async def _start_watchdog(self) -> None:
        from ._watchdog import Watchdog, WatchdogUnavailable

        watchdog = Watchdog()
        try:
            await watchdog.start()
        except WatchdogUnavailable as exc:
            raise ConfigError(
                "command",
                " ".join(self.options.command),
                f"cannot run exclusively: {exc}, and without a watchdog process nothing "
                "stops the command when this node's lease ends unseen; fix that, or pass "
                "--no-exclusive to run it whenever this node is leader",
            ) from exc
        self.watchdog = watchdog

    async def run(self, stop: asyncio.Event) -> None:
        # Both ports are checked, and the HTTP one bound, before the election starts, so
        # that a port in use stops the node before it has joined the cluster.
        address_field = f"{self.cluster.source}: nodes.{self.entry.node_id}.address"
        check_can_listen(address_field, self.entry.address)
        if self.http is not None and self._http_address is not None:
            try:
                await self.http.start()
            except OSError as exc:
                raise listen_error(
                    self._http_field, format_host_port(self._http_address), exc
                ) from None
        try:
            if self.command is not None and self.options.exclusive:
                await self._start_watchdog()
            try:
                await self.election.start()
            except OSError as exc:
                raise listen_error(
                    address_field, format_host_port(self.entry.address), exc
                ) from None
            if self.http is not None:
                logger.info("serving /status and /metrics on %s:%d", *self.http.address)
            if self.admin is not None:
                try:
                    await self.admin.start()
                except OSError as exc:
                    raise listen_error(
                        f"{self.cluster.source}: nodes.{self.entry.node_id}.admin",
                        format_host_port(self.admin_address),
                        exc,
                    ) from None
                logger.info("serving the admin endpoint on %s:%d", *self.admin.address)
            members = asyncio.create_task(self._follow_configuration())
            logger.info(
                "node %s of cluster %s listening on %s:%d; state in %s",
                self.entry.node_id,
                self.cluster.cluster_id,
                *self.transport.address,
                self.state_path,
            )
            if self.command is not None:
                from ._supervisor import CommandSupervisor

                self._supervisor = CommandSupervisor(
                    self.election,
                    self.command,
                    on_exit=self.options.on_command_exit,
                    watchdog=self.watchdog,
                )
                self._supervising = asyncio.create_task(self._supervisor.run())
            follow = asyncio.create_task(self._follow_leadership())
            stopped = asyncio.create_task(stop.wait())
            watched = {follow, stopped}
            if self._supervising is not None:
                watched.add(self._supervising)
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if follow in done:
                follow.result()
                if not stop.is_set():
                    self._log_removal()
            if self._supervising in done:
                self._supervisor_ended(self._supervising)
            follow.cancel()
            stopped.cancel()
            members.cancel()
            logger.info("shutting down")
        finally:
            await self._shutdown()

    def _log_removal(self) -> None:
        """The election ended by itself: a committed configuration left this node out."""
        config = self.election.status().configuration
        logger.info(
            "removed from the cluster: configuration %s does not hold %s; exiting",
            "(unknown)" if config is None else config.describe(),
            self.entry.node_id,
            extra={"event": "removed"},
        )

    def _supervisor_ended(self, supervising: asyncio.Task[None]) -> None:
        """The supervisor ends only with the election, or by failing (its watchdog died):
        either way this node must not go on without it."""
        from ._watchdog import WatchdogUnavailable

        try:
            supervising.result()
        except WatchdogUnavailable as exc:
            raise OSError(
                f"stopping: the leader command's watchdog failed ({exc}), and the command "
                "must not outlive this node's lease"
            ) from exc

    async def _shutdown(self) -> None:
        supervising = self._supervising
        if supervising is not None and self.watchdog is None:
            # Run whenever leader, the command stops first, with its full grace.
            supervising.cancel()
            await asyncio.wait({supervising})
        if self.http is not None:
            await self.http.close()
        if self.admin is not None:
            await self.admin.close()
        # An exclusive command is stopped by the election's close: its lease ends, and
        # the hand-over waits for the command (up to the lease's end) before it goes.
        await self.election.close()
        if supervising is not None and not supervising.done():
            supervising.cancel()
            await asyncio.wait({supervising})
        if self.command is not None:
            await self.command.stop(0.0)
        if self.watchdog is not None:
            await self.watchdog.close()

    @property
    def admin_address(self) -> tuple[str, int]:
        assert self.entry.admin is not None
        return self.entry.admin

    async def _follow_configuration(self) -> None:
        """Keep the transport's peers in step with the members' addresses.

        A member added while the cluster runs is reached at the address its
        configuration names, though no cluster file lists it; one the configuration
        names no address for is reached where the cluster file says. A peer that is no
        longer a member is dialled only when a message waits for it (the notice that
        tells it it was removed), not for ever.
        """
        me = self.entry.node_id
        async for config in self.election.configuration_changes():
            if config is None:
                continue
            members = config.ids
            for peer_id in self.transport.peer_addresses:
                self.transport.dial_on_demand(peer_id, peer_id not in members)
            for member in config.members:
                if member.node_id == me or member.address is None:
                    continue
                try:
                    address = parse_host_port("address", member.address)
                except ConfigError:
                    logger.warning(
                        "member %s has address %r, which is not host:port; not dialled",
                        member.node_id,
                        member.address,
                    )
                    continue
                if self.transport.peer_addresses.get(member.node_id) != address:
                    logger.info("reaching member %s at %s", member.node_id, member.address)
                    self.transport.set_peer_address(member.node_id, address)

    async def _follow_leadership(self) -> None:
        # News only: the command's supervisor follows leadership on its own, so a
        # command that is slow to stop never holds the next change back.
        me = self.entry.node_id
        async for change in self.election.leadership_changes():
            _log_change(me, change)


def _check_http_option(cluster: ClusterConfig, node_id: str, http: tuple[str, int]) -> None:
    """Refuse an ``--http`` that is an address the cluster file gives another listener.

    The file's own addresses are checked when it is loaded; ``--http`` comes later.
    """
    for other_id, other in sorted(cluster.nodes.items()):
        for name, address in (("address", other.address), ("http", other.http)):
            if address == http and not (other_id == node_id and name == "http"):
                raise ConfigError(
                    "--http",
                    format_host_port(http),
                    f"is also nodes.{other_id}.{name} in {cluster.source}: give /status "
                    "and /metrics a port of their own",
                )


def _log_change(me: str, change: LeaderChange) -> None:
    if change.leader_id is None:
        text = f"no leader known (term {change.term})"
    elif change.leader_id == me:
        text = f"this node is leader of term {change.term}"
    else:
        text = f"leader is {change.leader_id} (term {change.term})"
    logger.info(
        text,
        extra={
            "event": "leader_changed",
            "leader": change.leader_id,
            "term": change.term,
            "is_self": change.leader_id == me,
        },
    )


async def run_node(options: RunOptions) -> None:
    """Run one node until SIGTERM or SIGINT.

    Raises:
        ConfigError: the cluster file or the options are invalid (names the field).
        StateFileError: the state file cannot be trusted; the node did not start.
    """
    cluster = ClusterConfig.load(options.config_path)
    node = _Node(options, cluster, cluster.entry(options.node_id))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await node.run(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
