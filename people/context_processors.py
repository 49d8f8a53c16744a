from django.utils.functional import SimpleLazyObject

from people import services


def missed_calls(request) -> dict:
    """`missed_calls_unseen`: the navigation bar's count of missed calls not seen on My calls yet (counted only if
    the page shows it)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"missed_calls_unseen": 0}
    return {"missed_calls_unseen": SimpleLazyObject(lambda: services.unseen_missed_count(user))}
