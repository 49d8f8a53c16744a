"""Delivery of /ws/me/ frames from synchronous code (views, services, timers) to the channel-layer group
`user.<id>` of each user: the relay-node channels of the processes that hold their sockets (people.consumers.Hub)."""

import logging

from calls import sync_sender

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
