"""Signals that `calls` sends for the apps built on it (`people`), which `calls` does not import.

- `call_changed`: people joined or left live calls, once that is committed. Keyword argument `changes`: a list of
  `calls.announcements.CallChange` (`room_id`, `call_id`, `user_id` (None for a deleted user), `joined` (True for a
  join, False for a leave), `ended` (the leave ended the call)), in the order they were committed. Sent in a
  database thread: at once for a change made by a view or a timer, in batches for the joins of signaling sockets.
- `my_calls_opened`: the user opened their My calls page. Keyword arguments `user`, and the stretch shown: `since`,
  `until` (datetimes or None), `person` (a user or None: entries with them), `room` (a slug or ""); each receiver
  returns a list of extra timeline entries, dicts with at least `at` (a datetime), `template` (the row's template,
  given the dict as `row`) and `kind`.
"""

from django.dispatch import Signal

call_changed = Signal()
my_calls_opened = Signal()


def timeline_entries(*, user, since=None, until=None, person=None, room: str = "") -> list[dict]:
    """The entries the receivers of `my_calls_opened` add to the user's My calls timeline."""
    entries = []
    for _receiver, response in my_calls_opened.send(sender=None, user=user, since=since, until=until, person=person,
                                                    room=room):
        entries.extend(response or [])
    return entries
