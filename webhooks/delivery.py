"""Sending webhooks: Standard Webhooks v1 signatures, an address check at every attempt (no SSRF), the retry
schedule, and the claim of due deliveries that lets several workers run at once (docs/webhooks.md)."""

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts import audit
from webhooks import outbox
from webhooks.models import Delivery, Endpoint

logger = logging.getLogger(__name__)

# Standard Webhooks: after the first attempt, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
RETRY_SCHEDULE = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600]
MAX_ATTEMPTS = 1 + len(RETRY_SCHEDULE)
USER_AGENT = "Parley-Webhooks/1"


# --- Signatures ----------------------------------------------------------------------------------


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(*, secret: str, headers: dict, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (docs/webhooks.md): a fresh timestamp and one matching `v1` signature."""
    msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs((now if now is not None else time.time()) - int(stamp)) > tolerance:
        return False
    expected = sign(secret=secret, msg_id=msg_id, timestamp=int(stamp), body=body)
    return any(hmac.compare_digest(expected, given) for given in headers["webhook-signature"].split())


def body_of(delivery: Delivery) -> bytes:
    return json.dumps(delivery.event.body(), separators=(",", ":"), sort_keys=True).encode()


# --- Addresses: no requests to loopback, link-local or private networks --------------------------


class UnsafeURL(ValueError):
    pass


def address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> list[str]:
    """The addresses to connect to for `url`, every one of them allowed; raise UnsafeURL otherwise.

    Called when an endpoint is registered and again before every attempt, whose connection goes to the address
    checked here (a name that resolves elsewhere between the check and the connection is no way round it)."""
    config = settings.PARLEY_WEBHOOKS
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise UnsafeURL("The URL must be http(s)://host/...")
    if parts.scheme == "http" and not config["ALLOW_HTTP"]:
        raise UnsafeURL("The URL must use https.")
    if parts.username or parts.password:
        raise UnsafeURL("The URL must not carry credentials.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeURL(f"The host {parts.hostname!r} does not resolve: {error}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not config["ALLOW_PRIVATE"]:
        refused = [a for a in addresses if not address_allowed(a)]
        if refused:
            raise UnsafeURL(f"The host {parts.hostname!r} is a loopback, link-local or private address "
                            f"({', '.join(refused)}).")
    return addresses


def _connect_to_one_of(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A connection to the first of the checked addresses that answers (never to a name resolved again)."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as failed:
            error = failed
    raise error or OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, *, addresses, **kwargs):
        super().__init__(host, port, **kwargs)
        self.addresses = addresses

    def connect(self):
        self.sock = _connect_to_one_of(self.addresses, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to the checked address, with the certificate verified against the URL's host name (SNI too)."""

    def __init__(self, host, port, *, addresses, **kwargs):
        super().__init__(host, port, **kwargs)
        self.addresses = addresses

    def connect(self):
        sock = _connect_to_one_of(self.addresses, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST to the checked addresses of `url`; returns the response status. Redirects are not followed."""
    addresses = check_url(url)
    parts = urlsplit(url)
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(parts.hostname, parts.port, addresses=addresses, timeout=timeout)
    try:
        connection.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body=body,
                           headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)
        return response.status
    finally:
        connection.close()


# --- Attempts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: int | None  # the response's, None when there was none
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def retry_delay(attempts: int) -> timedelta | None:
    """How long after the `attempts`-th failed attempt the next one is due; None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return timedelta(seconds=RETRY_SCHEDULE[attempts - 1] * settings.PARLEY_WEBHOOKS["RETRY_SCALE"])


def attempt(delivery: Delivery) -> Outcome:
    body = body_of(delivery)
    stamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.event.event_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret=delivery.endpoint.secret, msg_id=delivery.event.event_id, timestamp=stamp,
                                  body=body),
    }
    try:
        status = post(url=delivery.endpoint.url, body=body, headers=headers,
                      timeout=settings.PARLEY_WEBHOOKS["TIMEOUT"])
    except UnsafeURL as error:
        return Outcome(None, f"refused: {error}")
    except (OSError, http.client.HTTPException) as error:
        return Outcome(None, f"{type(error).__name__}: {error}")
    return Outcome(status, "" if 200 <= status < 300 else f"HTTP {status}")


def due_deliveries(now):
    """Pending deliveries that are due, to enabled endpoints, each the first pending one of its room for its
    endpoint (so one room's events reach an endpoint in order)."""
    earlier = Delivery.objects.filter(endpoint=OuterRef("endpoint"), room_key=OuterRef("room_key"),
                                      status=Delivery.Status.PENDING, id__lt=OuterRef("id"))
    return (Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now, endpoint__enabled=True)
            .filter(~Exists(earlier)).order_by("next_attempt_at", "id"))


def deliver_next() -> Delivery | None:
    """Claim one due delivery (`FOR UPDATE SKIP LOCKED`: other workers skip it), attempt it and record the
    outcome, all in one transaction: a worker that dies mid-attempt leaves it pending, to be sent again."""
    with transaction.atomic():
        delivery = (due_deliveries(timezone.now()).select_for_update(skip_locked=True, of=("self",))
                    .select_related("event", "endpoint").first())
        if delivery is None:
            return None
        outcome = attempt(delivery)
        record(delivery=delivery, outcome=outcome)
    endpoint_bookkeeping(delivery=delivery, outcome=outcome)
    return delivery


def record(*, delivery: Delivery, outcome: Outcome) -> None:
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_response_code = outcome.status
    delivery.last_error = outcome.error[:300]
    if outcome.ok:
        delivery.status, delivery.delivered_at = Delivery.Status.DELIVERED, now
    elif outcome.status == 410:
        delivery.status = Delivery.Status.FAILED
    else:
        delay = retry_delay(delivery.attempts)
        if delay is None:
            delivery.status = Delivery.Status.FAILED
        else:
            delivery.next_attempt_at = now + delay
    delivery.save(update_fields=["attempts", "last_attempt_at", "last_response_code", "last_error", "status",
                                 "delivered_at", "next_attempt_at"])
    logger.info("webhook %s to endpoint %s: attempt %d, %s", delivery.event.event_id, delivery.endpoint_id,
                delivery.attempts, outcome.status or outcome.error)


def endpoint_bookkeeping(*, delivery: Delivery, outcome: Outcome) -> None:
    """After the delivery's transaction: a success ends the endpoint's failing streak; a 410, or failing for
    longer than DISABLE_AFTER_SECONDS, disables it (its owner is told)."""
    endpoint, now = delivery.endpoint, timezone.now()
    if outcome.ok:
        Endpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False).update(failing_since=None)
        return
    Endpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    limit = timedelta(seconds=settings.PARLEY_WEBHOOKS["DISABLE_AFTER_SECONDS"])
    if outcome.status == 410:
        disable(endpoint=endpoint, reason=Endpoint.DisabledReason.GONE)
    elif endpoint.failing_since is not None and now - endpoint.failing_since >= limit:
        disable(endpoint=endpoint, reason=Endpoint.DisabledReason.FAILING)


def disable(*, endpoint: Endpoint, reason: str) -> bool:
    if not Endpoint.objects.filter(pk=endpoint.pk, enabled=True).update(enabled=False, disabled_reason=reason):
        return False
    outbox.enabled_endpoints.changed()  # an update() sends no post_save
    endpoint.refresh_from_db()
    logger.warning("webhook endpoint %s (%s) disabled: %s", endpoint.pk, endpoint.url, reason)
    audit.record("webhook.disabled", actor=None, target=f"webhook:{endpoint.pk}", url=endpoint.url, reason=reason)
    if endpoint.owner.email:
        send_mail(
            subject="Parley: a webhook endpoint was disabled",
            message=f"Your webhook endpoint {endpoint.url} was disabled ({endpoint.get_disabled_reason_display()}).\n"
                    "Its events are kept: enable it again once it works, and they will be delivered.",
            from_email=None, recipient_list=[endpoint.owner.email], fail_silently=True,
        )
    return True


def replay(*, delivery: Delivery) -> None:
    """Send a delivery once more (the admin's action): pending and due now; its attempts go on counting."""
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.PENDING, next_attempt_at=timezone.now(),
                                                   delivered_at=None)


def deliver_due(*, limit: int) -> int:
    """Deliver due deliveries until none is left or `limit` were attempted. Returns how many were attempted."""
    done = 0
    while done < limit and deliver_next() is not None:
        done += 1
    return done
