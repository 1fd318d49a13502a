"""A seed-API ``Node`` over in-process queues, as in the Rust crate's README."""

from __future__ import annotations

import asyncio

from almost_raft import Message, Node


class NodeMPSC(Node):
    """A peer reached by putting messages on its ``to_raft`` queue."""

    def __init__(self, id: str, sender: asyncio.Queue[Message]) -> None:
        self.id = id
        self.sender = sender

    async def send_message(self, msg: Message) -> None:
        await self.sender.put(msg)

    def node_id(self) -> str:
        return self.id
