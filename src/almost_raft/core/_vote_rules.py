"""How a node answers vote requests, and which ones skip the term rules.

Pure functions of the voter's state, free of the rest of the election, so each rule can
be read next to the reason for it. :class:`~almost_raft.ElectionCore` applies them.
"""

from __future__ import annotations

from ._messages import (
    HeartBeat,
    HeartBeatResponse,
    PeerMessage,
    RequestVote,
    RequestVoteResponse,
)

__all__ = [
    "grants_vote",
    "ignored_during_lease",
    "keeps_term",
    "stale_term_reply",
    "vote_response_is_current",
]


def ignored_during_lease(request: RequestVote, term: int, in_lease: bool) -> bool:
    """Whether a vote request of a newer term is ignored without raising ``term``.

    Leader stickiness (thesis 4.2.3): while this node believes a leader is alive, a vote
    request does not even raise its term, so a node that was cut off and comes back
    cannot depose a healthy leader. A handed-over election is the leader's own wish, so
    it passes (thesis 3.10), but only for the term right after the leader's: a forged
    hand-over cannot jump the term far ahead.
    """
    return not (request.transfer and request.term == term + 1) and in_lease


def keeps_term(message: PeerMessage) -> bool:
    """Whether a message of a newer term reaches its handler without changing the term.

    A pre-vote is hypothetical: it never changes anyone's term. A granted pre-vote
    carries the term the candidate *would* have; the candidate has not raised its term
    yet, and must not be deposed by it.
    """
    if isinstance(message, RequestVote):
        return message.pre_vote
    return isinstance(message, RequestVoteResponse) and message.pre_vote and message.granted


def stale_term_reply(message: PeerMessage, term: int, node_id: str) -> PeerMessage | None:
    """The answer to a message of an older term than ``term``, if it gets one.

    A deposed leader hears the newer term, so it steps down as soon as it can hear anyone
    instead of waiting for CheckQuorum; a stale candidate hears it with its refusal.
    """
    if isinstance(message, HeartBeat):
        return HeartBeatResponse(term, node_id)
    if isinstance(message, RequestVote):
        return RequestVoteResponse(term, node_id, granted=False, pre_vote=message.pre_vote)
    return None


def grants_vote(
    request: RequestVote,
    *,
    term: int,
    voted_for: str | None,
    leader_id: str | None,
    hears_leader: bool,
) -> bool:
    """Whether a voter in ``term`` grants ``request``, whose term the term rules allowed.

    A pre-vote asks: would this node vote for the candidate in ``request.term``? Not
    while it hears from a leader (thesis 9.6): that is what stops a node returning from a
    partition, and it holds with CheckQuorum off too, where the term rules have not
    dropped the request. Otherwise yes if that term is newer, or if this node has no vote
    and no leader in the current term. A real vote goes to the candidate this node
    already voted for, or to the first to ask in a term with no vote and no leader.
    """
    candidate = request.candidate_id
    if request.pre_vote:
        return not hears_leader and (
            request.term > term
            or voted_for == candidate
            or (voted_for is None and leader_id is None)
        )
    return voted_for == candidate or (voted_for is None and leader_id is None)


def vote_response_is_current(response: RequestVoteResponse, term: int, pre_candidate: bool) -> bool:
    """Whether ``response`` answers the campaign a node in ``term`` runs now.

    A granted pre-vote carries the term this node would campaign in; a refusal carries
    the voter's own term, which the term rules have made ours.
    """
    if response.pre_vote != pre_candidate:
        return False
    expected = term + 1 if pre_candidate and response.granted else term
    return response.term == expected
