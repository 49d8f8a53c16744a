from django.core.management.base import BaseCommand, CommandError

from calls import retention


class Command(BaseCommand):
    help = (
        "Delete the call history older than PARLEY_CALL_RETENTION_DAYS (calls, their participants, delivered "
        "webhook events, ...; calls.retention.PURGES lists them), in batches. Safe from cron, and safe to run twice "
        "at once. Does nothing when the retention is unset (keep forever)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Only say how many rows would go.")
        parser.add_argument("--days", type=int, default=None, help="Override PARLEY_CALL_RETENTION_DAYS.")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *, dry_run: bool, days: int | None, batch_size: int, **options):
        if batch_size < 1 or (days is not None and days < 1):
            raise CommandError("--batch-size and --days must be positive.")
        cutoff = retention.cutoff_for(days)
        if cutoff is None:
            self.stdout.write("PARLEY_CALL_RETENTION_DAYS is unset: the call history is kept forever.")
            return
        counts = retention.purge_older_than(cutoff, batch_size=batch_size, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for name, count in counts.items():
            self.stdout.write(f"{verb} {count} {name} older than {cutoff:%Y-%m-%d %H:%M} UTC")
