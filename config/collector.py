"""The garbage collector of a server process, tuned for thousands of long-lived sockets.

CPython's cyclic collector stops the whole process while it runs. With 4,000 connected sockets a full collection
walks millions of objects: 300 to 600 ms each, about 20 of them in a minute of relayed frames with the default
thresholds (measured with gc.callbacks in daphne, docs/performance.md), and every frame that arrives meanwhile
waits. The server therefore:

- freezes what exists once the application is built (Django, the URL conf, the models: about 200,000 objects),
  which no collection then walks again;
- collects the youngest generation after PARLEY_GC_THRESHOLDS[0] allocations instead of 700, and the oldest
  only after PARLEY_GC_THRESHOLDS[2] collections of the middle one instead of 10, so full collections happen
  when the heap has grown (joins), not every few seconds under a steady load.

Garbage is still collected: cycles that a closed socket leaves behind are found by the young generations or by
the rarer full collections.
"""

import gc

from django.conf import settings


def tune_garbage_collector() -> None:
    thresholds = settings.PARLEY_GC_THRESHOLDS
    if thresholds is None:  # Python's own
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
