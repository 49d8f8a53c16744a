"""The cache (Redis in production) through one client per process.

`django.core.cache.cache` is per async context, and the signaling database threads run each piece of work in a
context of its own: every join connected to Redis anew, health check included (a quarter of a join's CPU in a
py-spy profile of 1,000 joins). The client is thread-safe (redis-py's connection pool).
"""

from functools import cache

from django.core.cache import caches


@cache
def shared_cache():
    return caches.create_connection("default")
