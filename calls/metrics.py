"""Prometheus metrics (docs/operations.md "Metrics"): what the server processes count, and `GET /metrics`.

With several server processes, set PROMETHEUS_MULTIPROC_DIR (an empty directory shared by them, emptied at each
deployment's start): every process writes its counts there and a scrape of any one of them adds up all of them
(prometheus-client's multiprocess mode). Live calls and participants are counted in the database at scrape time.

The relay path pays one plain integer increment per frame (relayed_tally: about 90 ns, where a prometheus-client
counter costs 1 us, 2 us in multiprocess mode); the tally goes into the counter at every heartbeat of the process
(PARLEY_NODE_BEAT_SECONDS) and at each scrape of it. Elsewhere the labelled children are bound here, once.
"""

import atexit
import hmac
import ipaddress
import os
import threading

from django.conf import settings
from django.http import Http404, HttpResponse, HttpResponseForbidden
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
if MULTIPROCESS:
    from prometheus_client import multiprocess

    # A process that stops takes its live gauges (open sockets, queue depth) out of the sums; one killed with -9
    # leaves them until the directory is emptied (at the deployment's next start).
    atexit.register(lambda: (flush(), multiprocess.mark_process_dead(os.getpid())))

SOCKETS = Gauge("parley_open_sockets", "Open WebSockets: room calls (room) and the per-user socket (me).", ["kind"],
                multiprocess_mode="livesum")
ROOM_SOCKETS, ME_SOCKETS = SOCKETS.labels("room"), SOCKETS.labels("me")

RELAYED_TYPES = ("offer", "answer", "candidate", "media-state", "chat")
FRAMES_RELAYED = Counter("parley_frames_relayed", "Client frames relayed, by type (a media-state once, however many "
                         "peers it goes to).", ["type"])
RELAYED = {kind: FRAMES_RELAYED.labels(kind) for kind in RELAYED_TYPES}
# Incremented on the event loop only; flush() adds what it gained since the last flush to FRAMES_RELAYED.
relayed_tally = dict.fromkeys(RELAYED_TYPES, 0)
_flushed = dict.fromkeys(RELAYED_TYPES, 0)
_flushing = threading.Lock()
STATS_REPORTS = Counter("parley_stats_reports", "stats frames folded into the call-quality record.")

CLIENT_TYPES = frozenset({*RELAYED_TYPES, "ping", "leave", "stats"})
FRAMES_REFUSED = Counter("parley_frames_refused", "Client frames refused with an error frame, by type ('other' for "
                         "an unknown or missing type) and error code.", ["type", "reason"])

RATE_LIMITED = Counter("parley_rate_limit_hits", "Frames over a rate limit: the connection's (frames), a peer's "
                       "stats reports (stats); and connections closed for flooding (flood-close).", ["limit"])
FRAME_LIMIT, STATS_LIMIT, FLOOD_CLOSE = (RATE_LIMITED.labels(name) for name in ("frames", "stats", "flood-close"))

JOIN_SECONDS = Histogram("parley_join_seconds", "From a signaling socket's accept to its welcome (joins and resumes).",
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
# Sampled: one relayed frame in RELAY_SAMPLE_EVERY, so that timing costs the relay path next to nothing.
RELAY_SAMPLE_EVERY = 16
RELAY_SECONDS = Histogram("parley_relay_seconds", f"From receiving an offer, answer or candidate to handing it to the "
                          f"peer's process (one frame in {RELAY_SAMPLE_EVERY}).",
                          buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5))
RESUMES = Counter("parley_resumes", "Participations resumed on a new socket.")
JOINS_SHED = Counter("parley_joins_shed", "Joins and resumes refused with 4503 because PARLEY_MAX_JOINING were "
                     "already waiting for their welcome on the process (a reconnect storm).")
RINGS = Counter("parley_rings", "Rings ended, by outcome.", ["outcome"])
API_REQUESTS = Counter("parley_api_requests", "REST API requests (/api/), by response status.", ["status"])
DB_QUEUE = Gauge("parley_db_thread_queue_depth", "Work waiting for a signaling database thread (sampled every "
                 "heartbeat, and at each scrape in the scraped process).", multiprocess_mode="livesum")


def refused(data, code: str) -> None:
    """A frame refused with `code`; `data` is what it decoded to (None if it did not), whatever its shape."""
    kind = data.get("type") if isinstance(data, dict) else None
    FRAMES_REFUSED.labels(kind if type(kind) is str and kind in CLIENT_TYPES else "other", code).inc()


def flush() -> None:
    with _flushing:
        for kind, child in RELAYED.items():
            count = relayed_tally[kind]
            if count != _flushed[kind]:
                child.inc(count - _flushed[kind])
                _flushed[kind] = count


def sample_process() -> None:
    """What this process tallied, and the gauges it sets from its own state."""
    from calls.db_threads import db_threads

    flush()
    DB_QUEUE.set(db_threads._work_queue.qsize())


class DatabaseCollector:
    """Live calls and participants, from the database: the same whichever process is scraped."""

    def collect(self):
        from calls.models import Call, CallParticipant

        yield GaugeMetricFamily("parley_live_calls", "Calls in progress.", value=Call.objects.live().count())
        participants = CallParticipant.objects.live()
        family = GaugeMetricFamily("parley_live_participants", "Participations in progress, connected or "
                                   "reconnecting (suspended, waiting for a resume).", labels=["state"])
        family.add_metric(["connected"], participants.filter(suspended_at__isnull=True).count())
        family.add_metric(["reconnecting"], participants.filter(suspended_at__isnull=False).count())
        yield family


def registry() -> CollectorRegistry:
    if MULTIPROCESS:
        scraped = CollectorRegistry()
        multiprocess.MultiProcessCollector(scraped)
    else:
        from prometheus_client import REGISTRY as scraped
    combined = CollectorRegistry()
    combined.register(_Forward(scraped))
    combined.register(DatabaseCollector())
    return combined


class _Forward:
    def __init__(self, source):
        self.source = source

    def collect(self):
        return self.source.collect()


def allowed(request) -> bool:
    """A bearer token (PARLEY_METRICS_TOKEN) or an address in PARLEY_METRICS_ALLOW; 404 if neither is set."""
    token, networks = settings.PARLEY_METRICS_TOKEN, settings.PARLEY_METRICS_ALLOW
    if not token and not networks:
        raise Http404
    if token:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            return True
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            return False
        return any(address in network for network in networks)
    return False


def metrics_view(request):
    if not allowed(request):
        return HttpResponseForbidden("Not allowed.", content_type="text/plain")
    sample_process()
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


class APIRequestsMiddleware:
    """Counts REST API responses by status."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/api/"):
            API_REQUESTS.labels(str(response.status_code)).inc()
        return response
