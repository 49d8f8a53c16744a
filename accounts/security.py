"""Who is knocking: the client address used by the log-in lockout (django-axes) and the API throttles."""

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

LOCKED_OUT = "Too many failed log-ins for this account from your address. Try again in {minutes} minutes."


def client_ip(request) -> str:
    """REMOTE_ADDR; behind the one trusted reverse proxy (DJANGO_BEHIND_PROXY), the address it appended to
    X-Forwarded-For, which is the last one: whatever a client put there itself comes before it."""
    remote = request.META.get("REMOTE_ADDR", "")
    if not settings.PARLEY_BEHIND_PROXY:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    return forwarded[-1] if forwarded else remote


def locked_out(request, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer to a locked-out log-in: DRF's error shape for the API, a page for people."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    message = LOCKED_OUT.format(minutes=seconds // 60)
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=429)
    else:
        response = render(request, "registration/locked_out.html", {"message": message}, status=429)
    response["Retry-After"] = str(seconds)
    return response
