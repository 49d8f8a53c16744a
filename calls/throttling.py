"""The REST API's rate limits, kept in the cache (Redis in production). A cache outage must not take the API
down with it: while the cache cannot be reached, requests are let through (and the outage is logged)."""

import logging

from rest_framework import throttling

logger = logging.getLogger(__name__)


class CacheTolerant:
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except Exception:
            logger.warning("rate limit not checked: the cache cannot be reached", exc_info=True)
            return True


class AnonRateThrottle(CacheTolerant, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(CacheTolerant, throttling.UserRateThrottle):
    pass
