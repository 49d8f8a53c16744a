"""Delivery of /ws/me/ frames from synchronous code (views, services, timers) to the channel-layer group
`user.<id>` of each user: the relay-node channels of the processes that hold their sockets (people.consumers.Hub)."""

import logging

from django.db import transaction

from calls import protocol, sync_sender

logger = logging.getLogger(__name__)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class Sender:
    """Frames for users' sockets from synchronous code, through calls.sync_sender (on Redis, an event loop and a
    layer of its own: group sends made through the server's loop from worker threads were seen to reach nobody)."""

    def send(self, user_ids: list[int], text: str, *, kind: str | None = None, message: str = "me.frame") -> None:
        """Send `text` to the users' sockets; with message="me.close", close them (4401) instead."""
        async def send(layer):
            await send_all(layer, user_ids, text, message)

        try:
            sync_sender.sender.run(send)
        except Exception:  # the channel layer (Redis) is down
            logger.exception("people: could not send %s to users %s", kind, user_ids)


sender = Sender()


async def send_all(layer, user_ids: list[int], text: str, message: str = "me.frame") -> None:
    for user_id in user_ids:
        await layer.group_send(user_group(user_id), {"type": message, "user": user_id, "text": text})


def send_to_users(user_ids, frame: dict) -> None:
    """Send the frame to every /ws/me/ socket of the users once the transaction commits (at once outside one).

    Never raises: the change is recorded, and pages catch up when their socket reconnects (its `welcome`)."""
    targets = sorted({pk for pk in user_ids if pk is not None})
    if targets:
        text = protocol.encode(frame)
        transaction.on_commit(lambda: sender.send(targets, text, kind=frame.get("type")))
