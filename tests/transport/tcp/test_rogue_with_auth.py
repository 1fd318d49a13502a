"""With a shared secret on, a rogue that claims a member's id cannot raise anyone's term."""

from __future__ import annotations

import pytest

from almost_raft import Election, ElectionConfig, NodeState, RequestVote, TcpTransport
from helpers.cluster import run_async, wait_until

pytestmark = pytest.mark.slow

SECRET = b"the cluster's own secret, 32 b!"
ROGUE_SECRET = b"a guess that is not the secret!"
IDS = ("a", "b", "c")
CONFIG = ElectionConfig(
    election_timeout=0.3, election_timeout_max=0.6, heartbeat_interval=0.03, message_timeout=0.2
)


def _transport(secret: bytes) -> TcpTransport:
    return TcpTransport(
        listen=("127.0.0.1", 0),
        peers={},
        cluster_id="auth",
        secret=secret,
        backoff_initial=0.01,
        backoff_max=0.1,
    )


class _Ignore:
    def deliver(self, message: object) -> None:
        pass

    def peer_unreachable(self, peer_id: str) -> None:
        pass

    def peer_disconnected(self, peer_id: str) -> None:
        pass


@run_async
async def test_a_rogue_without_the_secret_cannot_raise_any_term() -> None:
    transports = {node: _transport(SECRET) for node in IDS}
    elections = {node: Election(node, IDS, transports[node], config=CONFIG) for node in IDS}
    rogue = _transport(ROGUE_SECRET)
    try:
        for election in elections.values():
            await election.start()
        for node, transport in transports.items():
            for other, other_transport in transports.items():
                if other != node:
                    transport.set_peer_address(other, other_transport.address)

        def agreed() -> bool:
            statuses = [e.status() for e in elections.values()]
            leaders = {(s.leader_id, s.term) for s in statuses}
            return len(leaders) == 1 and sum(s.role is NodeState.LEADER for s in statuses) == 1

        await wait_until(agreed, what="a leader")
        before = {node: e.status().term for node, e in elections.items()}
        # The rogue claims to be member c and asks every node for a vote in a huge term.
        await rogue.start("c", _Ignore())
        for node in ("a", "b"):
            rogue.set_peer_address(node, transports[node].address)
        for _ in range(20):
            for node in ("a", "b"):
                await rogue.send(node, RequestVote(10**12, "c"))
        # The members' proofs do not match the rogue's key, so no connection gets past
        # the handshake and none of its requests is ever read.
        await wait_until(lambda: rogue.metrics.bad_auth >= 2, what="the handshakes to fail")
        assert rogue.metrics.sent.total == 0
        assert agreed()
        assert {node: e.status().term for node, e in elections.items()} == before
        assert all(e.status().term < 10**12 for e in elections.values())
    finally:
        await rogue.close()
        for election in elections.values():
            await election.close()
