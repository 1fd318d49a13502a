"""The API most users need: :class:`Election`, one node's membership in an election.

Everything here is a convenience over the runtime: status reads, waiting for a leader,
a stream of leadership changes, and scopes that run code only while this node leads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

from ..core._config import ElectionConfig
from ..core._configuration import Configuration, Member
from ..core._errors import ConfigError, ElectionClosed, LeadershipLost
from ..core._outputs import LeaderChange
from ..core._state import NodeState
from ..core._validation import check_cluster_size, check_id, check_peer_ids
from ..store._store import MemoryStore, Store
from ..transport._interface import Transport
from ._driver import Runtime
from ._latest_value import Subscription
from ._leadership import Leadership, LeadershipScope
from ._status import ElectionStatus

__all__ = ["Election", "ElectionMetrics", "Leadership", "LeadershipScope"]

logger = logging.getLogger("almost_raft.election")


@dataclasses.dataclass(frozen=True, slots=True)
class ElectionMetrics:
    """A snapshot of one node's counters: the core's and the runtime's.

    Attributes:
        term: the current term.
        role: the current role.
        pre_votes_started: pre-vote rounds this node started.
        leader_down_reports: times the transport's evidence that the leader's process was
            gone made this node campaign early.
        handovers_received: times a leader handed leadership to this node.
        elections_started: real elections this node started (each raised its term).
        elections_won: elections this node won.
        leader_changes: changes of the leader this node knows.
        messages_dropped: peer messages the core ignored, by reason.
        inputs_dropped: peer messages dropped because too many were waiting.
        messages_sent: sends started.
        sends_failed: sends whose transport call raised.
        sends_timed_out: sends cut off after ``message_timeout``.
        state_saves: terms and votes made durable.
        early_pre_votes: times this node, first in line after its leader's connection
            ended, sent its pre-vote requests before the evidence of a crash.
    """

    term: int
    role: NodeState
    pre_votes_started: int
    leader_down_reports: int
    handovers_received: int
    elections_started: int
    elections_won: int
    leader_changes: int
    messages_dropped: dict[str, int]
    inputs_dropped: int
    messages_sent: int
    sends_failed: int
    sends_timed_out: int
    state_saves: int
    early_pre_votes: int = 0


class Election:
    """One node's part in electing a leader among ``node_id`` and ``peers``.

    Use it as an async context manager (or call :meth:`start` and :meth:`close`)::

        async with Election("a", ["b", "c"], transport) as election:
            async with election.leadership() as leadership:
                ...  # runs only while this node leads term leadership.term

    Args:
        node_id: this node's id: 1 to 256 characters, unique in the cluster, the same
            across restarts.
        peers: the ids of the voting members. ``node_id`` itself may be included and is
            then ignored, so every node can be given the same list.
        transport: carries messages to and from the peers; the election starts and
            closes it.
        config: timings and limits; ``ElectionConfig()`` if not given.
        store: where the term and vote survive restarts; a fresh :class:`MemoryStore`
            if not given (which forgets them when the process exits). The election
            closes it.
        rng: the randomness of the election timeouts; seed it to replay a run.

    Raises:
        ConfigError: an argument is invalid; the error names it. Nothing was started.
    """

    def __init__(
        self,
        node_id: str,
        peers: Iterable[str],
        transport: Transport,
        *,
        config: ElectionConfig | None = None,
        store: Store | None = None,
        rng: random.Random | None = None,
    ) -> None:
        check_id("node_id", node_id)
        peer_list = check_peer_ids(node_id, peers)
        if not isinstance(transport, Transport):
            raise ConfigError("transport", transport, "must be an almost_raft.Transport")
        if config is None:
            config = ElectionConfig()
        elif not isinstance(config, ElectionConfig):
            raise ConfigError("config", config, "must be an ElectionConfig or None")
        check_cluster_size("peers", peer_list, config)
        if store is None:
            store = MemoryStore()
        elif not isinstance(store, Store):
            raise ConfigError("store", store, "must be an almost_raft.Store or None")
        if rng is None:
            rng = random.Random()
        elif not isinstance(rng, random.Random):
            raise ConfigError("rng", rng, "must be a random.Random or None")
        self._runtime = Runtime(node_id, peer_list, transport, config, store, rng)

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self._runtime.node_id

    @property
    def config(self) -> ElectionConfig:
        """The timings and limits this election runs with."""
        return self._runtime.config

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the stored term and vote, start the transport and take part.

        Raises:
            StateFileError: the stored state cannot be trusted. The node did not start;
                the election is closed (as are its transport and store).
            ElectionClosed: the election was already closed.
            RuntimeError: it was already started.
        """
        await self._runtime.start()

    async def close(self, *, hand_over: bool = True) -> None:
        """Leave the election, then close the transport and the store.

        A leader first hands leadership over to the peer that answered it most recently,
        so the others have a new leader after about one round trip instead of an election
        timeout, and stays connected until it hears of that leader (an election timeout
        at most); ``hand_over=False`` leaves at once, as abruptly as a crash would.

        Waiters get :class:`ElectionClosed`, leadership scopes raise
        :class:`LeadershipLost`, and iterators over leadership changes end. Idempotent
        and safe to call before :meth:`start`; the cleanup completes even if the caller
        is cancelled while waiting for it.
        """
        await self._runtime.close(hand_over=hand_over)

    async def __aenter__(self) -> Election:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ reading the state

    def status(self) -> ElectionStatus:
        """A snapshot of the election state; cheap, never blocks.

        Before :meth:`start` it shows term 0 and the configured peers (the stored term is
        read when the node starts); after :meth:`close` the role is ``TERMINATING``.
        """
        return self._runtime.status()

    def metrics(self) -> ElectionMetrics:
        """A snapshot of the core's and the runtime's counters."""
        status = self._runtime.status()
        runtime = self._runtime.metrics
        core = self._runtime.core
        return ElectionMetrics(
            term=status.term,
            role=status.role,
            pre_votes_started=core.metrics.pre_votes_started if core else 0,
            leader_down_reports=core.metrics.leader_down_reports if core else 0,
            handovers_received=core.metrics.handovers_received if core else 0,
            elections_started=core.metrics.elections_started if core else 0,
            elections_won=core.metrics.elections_won if core else 0,
            leader_changes=core.metrics.leader_changes if core else 0,
            messages_dropped=dict(core.metrics.dropped) if core else {},
            inputs_dropped=runtime.inputs_dropped,
            messages_sent=runtime.messages_sent,
            sends_failed=runtime.sends_failed,
            sends_timed_out=runtime.sends_timed_out,
            state_saves=runtime.state_saves,
            early_pre_votes=core.metrics.early_pre_votes if core else 0,
        )

    # A timeout argument, though asyncio.timeout() exists: "how long until there is a
    # leader" is the one question every caller asks, so it gets the short spelling.
    async def wait_for_leader(self, timeout: float | None = None) -> LeaderChange:  # noqa: ASYNC109
        """Wait until a leader is known; return it and its term.

        Returns at once if a leader is already known.

        Args:
            timeout: the longest wait, in seconds; ``None`` waits without limit.

        Raises:
            TimeoutError: no leader was known within ``timeout``.
            ElectionClosed: the election is closing or closed (or failed), now or before
                a leader was known.
        """
        self._runtime.check_open()
        source = self._runtime.leadership
        changes = source.subscribe()
        async with asyncio.timeout(timeout):
            while True:
                change = await changes.next()
                if source.closed:
                    raise source.closed_error()
                if change.leader_id is not None:
                    return change

    def leadership_changes(self) -> Subscription[LeaderChange]:
        """An async iterator over the leader this node knows, newest value first.

        The first value is the current one (``leader_id`` ``None`` while no leader is
        known). After that each value is a real change, but only the newest: the
        election never waits for a reader, so a reader that falls behind skips
        intermediate values (its ``skipped`` attribute counts them) and always ends up
        with the current leader and term. Iteration ends when the election closes;
        it raises :class:`ElectionClosed` if the election's task failed.
        """
        return self._runtime.leadership.subscribe()

    # ------------------------------------------------------------------ leading

    def leadership(self, *, exclusive: bool = False) -> LeadershipScope:
        """An async context manager that runs its body only while this node leads.

        Entering waits until this node is leader and gives a :class:`Leadership` with the
        term. If leadership is lost while the body runs (another node wins a newer term,
        this node loses contact with a majority, or the election closes), the body is
        cancelled and :class:`LeadershipLost` is raised out of the ``async with``, like
        ``asyncio.timeout()`` raises ``TimeoutError``. A body that finishes first exits
        normally. Each scope is entered once.

        With ``exclusive`` the body runs only under a lease (see
        :attr:`Leadership.exclusive`): entering waits until this node holds one, and
        the body is cancelled as above when the lease runs out unrenewed or ends early.
        A lease that ends early (a hand-over, :meth:`step_down`, :meth:`close`) waits for
        the body to finish, up to the lease's end, before the next leader is told to
        take over. Right after an election on crash evidence the lease waits out what
        the voters promised the old leader, up to an election timeout.

        Raises (from entering):
            ElectionClosed: the election is closing or closed (or failed), or closed while
                waiting.
        """
        return LeadershipScope(self._runtime, exclusive=exclusive)

    async def run_while_leader(
        self, work: Callable[[Leadership], Awaitable[None]], *, exclusive: bool = False
    ) -> None:
        """Run ``work`` whenever this node leads, and stop it when leadership ends.

        Forever: wait until this node is leader, run ``work(leadership)`` in a task, and
        cancel that task (and wait for it to finish) when leadership is lost. If ``work``
        returns or raises while this node still leads, that is logged and ``work`` is not
        run again until this node leads a later term. Returns when the election closes.
        ``exclusive`` runs ``work`` only under a lease, as :meth:`leadership` says.

        Raises:
            ElectionClosed: the election's task failed.
        """
        while True:
            try:
                async with self.leadership(exclusive=exclusive) as leadership:
                    await _run_until_done(work, leadership)
                    # Hold the scope until leadership ends: work runs once per term.
                    await asyncio.get_running_loop().create_future()
            except LeadershipLost as ended:
                logger.info("%s: leadership of term %d ended", self.node_id, ended.term)
            except ElectionClosed:
                if self._runtime.failure is not None:
                    raise
                return

    # ------------------------------------------------------------------ membership

    async def add_member(
        self, node_id: str, address: str | None = None, *, voter: bool = True
    ) -> Configuration:
        """Add a member through this node, which must lead; return once it is committed.

        The member joins as a non-voter: it hears the leader's heartbeats and saves the
        configuration, and only once it has and has answered the leader within an
        election timeout is it promoted (with ``voter``), so adding a member that is not
        up yet never costs the cluster its majority. Until then (it does not expire) no
        other change can be made except removing this member, and this call waits: give
        it a timeout if the member may not come. Adding a member already
        present changes nothing and returns once the configuration holding it is
        committed. A change asked for just after this node was elected waits for its
        configuration to be re-committed in its term first.

        Args:
            node_id: the new member's id.
            address: how to reach it, kept in the configuration for transports that
                need one (``host:port`` for TCP); opaque to the election.
            voter: whether it is promoted to voter once it is ready, as above.

        Returns:
            The committed configuration that holds the member.

        Raises:
            ConfigError: an argument is invalid, the address is another member's, or the
                cluster is at ``max_nodes``; nothing changed.
            MembershipChangeError: this node does not lead (``leader_id`` names the one
                it knows), another change is pending, or leadership ended before the
                change committed (it may still take effect).
            ElectionClosed: the election is not running.
        """
        check_id("node_id", node_id)
        if not isinstance(voter, bool):
            raise ConfigError("voter", voter, "must be True or False")
        member = Member(node_id, voter, address)
        return await self._runtime.change_members("add", member)

    async def remove_member(self, node_id: str) -> Configuration:
        """Remove a member through this node, which must lead; return once committed.

        The removal is committed by a majority of the configuration without the member.
        Removing this node itself commits first, then it hands leadership over to the
        member that answered last and leaves: its election ends (role
        ``TERMINATING``). A removed member that hears of the commit leaves too; one
        that was down meanwhile learns it from a member once it is back
        (:class:`RemovalNotice`), and leaves then.

        Returns:
            The committed configuration without the member.

        Raises:
            ConfigError: ``node_id`` is not a member, or is the last voter; nothing
                changed.
            MembershipChangeError: as for :meth:`add_member`.
            ElectionClosed: the election is not running.
        """
        check_id("node_id", node_id)
        return await self._runtime.change_members("remove", node_id)

    async def promote_member(self, node_id: str) -> Configuration:
        """Make the non-voter ``node_id`` a voter; return once committed.

        A non-voter that has saved the configuration and answered the leader within the
        last election timeout is promoted at once. Any other (one that is down, cut off,
        or never caught up) is promoted only once it has and answers, as a member added
        with :meth:`add_member` is: promoted at once, it would be needed for a majority
        it cannot give, and the cluster might elect no leader until it came back. Until
        then this call waits (the leader logs what for), and no other change can be made
        except removing ``node_id``, which cancels the promotion. The wait does not
        expire; it ends with this node's leadership, which fails the call, and a new
        leader does not carry it on. Wrap the call in a timeout if the member may not
        come. Promoting a voter changes nothing.

        Raises:
            ConfigError: ``node_id`` is not a member.
            MembershipChangeError: as for :meth:`add_member`.
            ElectionClosed: the election is not running.
        """
        check_id("node_id", node_id)
        return await self._runtime.change_members("promote", node_id)

    def configuration_changes(self) -> Subscription[Configuration | None]:
        """An async iterator over the configuration in force on this node, newest first.

        Delivered as :meth:`leadership_changes` is: the current value first (``None``
        before the node starts), then each change, skipping values a slow reader missed.
        It is what a transport that needs members' addresses follows.
        """
        return self._runtime.configurations.subscribe()

    def add_peer(self, peer_id: str) -> None:
        """Add ``peer_id`` as a member, without waiting; prefer :meth:`add_member`.

        Before any leader has made a configuration (the cluster is still starting) it
        adds ``peer_id`` to this node's starting configuration only: every node must
        be given the same members, or they refuse each other's votes. Once a leader has
        made one, on the leader it asks for the change as :meth:`add_member` does (a
        refusal is logged), and on any other node it is ignored with a log line. A peer
        beyond ``max_nodes`` is refused with a log line.

        Raises:
            ConfigError: ``peer_id`` is not a valid id or is this node's own.
            ElectionClosed: the election is closed.
        """
        check_id("peer_id", peer_id)
        if peer_id == self.node_id:
            raise ConfigError("peer_id", peer_id, "is this node's own id; name another node")
        self._runtime.add_peer(peer_id)

    def remove_peer(self, peer_id: str) -> None:
        """Remove ``peer_id``, without waiting; unknown ids are ignored.

        The same rules as :meth:`add_peer`: the starting configuration while no leader
        has made one, then a change asked of the leader; prefer :meth:`remove_member`.

        Raises:
            ConfigError: ``peer_id`` is not a valid id.
            ElectionClosed: the election is closed.
        """
        check_id("peer_id", peer_id)
        self._runtime.remove_peer(peer_id)

    def step_down(self) -> None:
        """Stop leading, if this node leads, so that another node takes over.

        This node hands leadership to the peer that answered it most recently, which
        campaigns at once; the others have a new leader after about one round trip. This
        node stays out of that election, and if the hand-over is lost the others elect
        someone after their election timeout. Does nothing on a node that is not leader.

        Raises:
            ElectionClosed: the election is closed.
        """
        self._runtime.step_down()

    def __repr__(self) -> str:
        status = self.status()
        return (
            f"<Election {status.node_id} term={status.term} role={status.role.value} "
            f"leader={status.leader_id}>"
        )


async def _run_until_done(
    work: Callable[[Leadership], Awaitable[None]], leadership: Leadership
) -> None:
    """Run ``work`` in its own task; if this task is cancelled, cancel it and wait for it."""

    async def run() -> None:
        await work(leadership)

    task = asyncio.get_running_loop().create_task(
        run(), name=f"almost-raft work {leadership.node_id} term {leadership.term}"
    )
    try:
        await asyncio.wait({task})
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        logger.warning(
            "%s: work of term %d was cancelled from inside; it runs again in a later term",
            leadership.node_id,
            leadership.term,
        )
    elif (error := task.exception()) is not None:
        logger.error(
            "%s: work of term %d failed; it runs again in a later term",
            leadership.node_id,
            leadership.term,
            exc_info=error,
        )
    else:
        logger.info(
            "%s: work of term %d returned; it runs again in a later term",
            leadership.node_id,
            leadership.term,
        )
