"""The signaling's database threads: joins, leaves and lookups of the sockets run here, off the event loop.

Joins and leaves mostly wait on database and cache round trips. Channels' default runs every such call in one
thread, one after another; a small pool (a connection per thread) lets a thousand joins overlap.
"""

from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.conf import settings

db_threads = ThreadPoolExecutor(max_workers=settings.PARLEY_SIGNALING["DB_THREADS"], thread_name_prefix="parley-db")


def in_db_thread(func):
    return database_sync_to_async(func, thread_sensitive=False, executor=db_threads)
