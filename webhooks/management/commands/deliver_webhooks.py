"""The webhook worker: `manage.py deliver_webhooks` (deploy/systemd/parley-webhooks.service). Several may run."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from webhooks import delivery


class Command(BaseCommand):
    help = "Deliver the due webhooks of the outbox, then wait for more (until SIGTERM); --once stops when none is due."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Deliver what is due, then exit.")
        parser.add_argument("--batch", type=int, default=100,
                            help="At most this many attempts between two looks at the clock and the signals.")
        parser.add_argument("--max-rounds", type=int, default=0,
                            help="Exit after this many rounds (0: no limit; with --once: one round).")

    def handle(self, *, once: bool, batch: int, max_rounds: int, **options):
        stopping = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        poll = settings.PARLEY_WEBHOOKS["POLL_SECONDS"]
        rounds = attempted = 0
        while not stopping.is_set():
            close_old_connections()
            done = delivery.deliver_due(limit=batch)
            attempted += done
            rounds += 1
            if (once and done < batch) or (max_rounds and rounds >= max_rounds):
                break
            if done < batch:
                stopping.wait(poll)
        self.stdout.write(f"attempted {attempted} deliveries")
