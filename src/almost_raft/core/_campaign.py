"""The campaign under way: what it asks for, and the answers it has.

A small state object holding one node's (pre-)campaign, so the counting rules read apart
from the rest of the election (etcd keeps the same in ``tracker/``). Votes are recorded
by voter and the first answer from each wins, so a duplicated response cannot count
twice; they are counted only over the current voters.
"""

from __future__ import annotations

from collections.abc import Collection

from ._messages import RequestVote
from ._quorum import VoteResult, vote_result

__all__ = ["Campaign"]


class Campaign:
    """The answers to this node's vote requests, by voter.

    ``pre_vote`` tells a pre-vote round (thesis 9.6) from a real election, and
    ``transfer`` an election the leader handed over (thesis 3.10) from one of this
    node's own making. ``votes`` is empty while no campaign runs.
    """

    __slots__ = ("pre_vote", "transfer", "votes")

    def __init__(self) -> None:
        self.votes: dict[str, bool] = {}
        self.pre_vote = False
        self.transfer = False

    def start(self, node_id: str, *, pre_vote: bool, transfer: bool) -> None:
        """Begin a campaign in which ``node_id`` has voted for itself."""
        self.pre_vote = pre_vote
        self.transfer = transfer
        self.votes = {node_id: True}

    def clear(self) -> None:
        """The campaign is over, won or lost: forget its answers."""
        self.votes.clear()

    def request(self, term: int, node_id: str) -> RequestVote:
        """The vote request that ``node_id``, in ``term``, sends to each voter.

        A pre-vote asks about the term the node would campaign in, which it has not
        raised yet. Only a real election can be a handed-over one.
        """
        if self.pre_vote:
            return RequestVote(term + 1, node_id, pre_vote=True, transfer=False)
        return RequestVote(term, node_id, pre_vote=False, transfer=self.transfer)

    def record(self, voter: str, granted: bool) -> None:
        """Record a voter's answer; the first answer from each voter wins."""
        self.votes.setdefault(voter, granted)

    def result(self, voters: Collection[str]) -> VoteResult:
        """Where the campaign stands among ``voters``."""
        return vote_result(voters, self.votes)

    def granted(self) -> list[str]:
        """The voters that granted their vote, in the order they answered."""
        return [voter for voter, vote in self.votes.items() if vote]
