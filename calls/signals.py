"""Signals that `calls` sends for the apps built on it (`people`), which `calls` does not import.

- `call_changed`: someone joined or left a live call, once that is committed. Keyword arguments: `room_id`,
  `call_id`, `user_id` (None for a deleted user), `joined` (True for a join, False for a leave), `ended` (the leave
  ended the call). Sent from the service layer (calls.services), in the thread that wrote it.
- `my_calls_opened`: the user opened their My calls page. Keyword argument `user`; each receiver returns a list of
  extra timeline entries, dicts with at least `at` (a datetime) and `template` (the row's template).
"""

from django.dispatch import Signal

call_changed = Signal()
my_calls_opened = Signal()


def timeline_entries(*, user) -> list[dict]:
    """The entries the receivers of `my_calls_opened` add to the user's My calls timeline."""
    entries = []
    for _receiver, response in my_calls_opened.send(sender=None, user=user):
        entries.extend(response or [])
    return entries
