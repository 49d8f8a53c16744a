from django.core.management.base import BaseCommand

from calls import services


class Command(BaseCommand):
    help = (
        "Time out call participants whose server process stopped refreshing them (it died), tell the peers "
        "still in their calls, and end calls left empty. Every server also runs this now and then; run it from "
        "cron as well if servers may all stop at once."
    )

    def handle(self, *args, **options):
        reaped = services.reap_stale_participants()
        self.stdout.write(f"timed out {reaped} participant(s)")
