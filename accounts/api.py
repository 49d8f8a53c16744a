"""API authentication for programs: tokens in exchange for a password, and who am I."""

from django.contrib.auth import authenticate, user_logged_in
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from accounts import audit, quotas, services
from accounts.data import export_user_data
from accounts.models import AuditEvent, User
from accounts.security import client_ip


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id", "username", "display_name")
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer):
    """An audit event as a room's owner sees it (GET /api/rooms/<slug>/audit/): without the client address."""

    actor = UserSerializer(read_only=True, allow_null=True, help_text="Who acted; null: the system, or nobody "
                                                                      "logged in (a refused join), or a deleted user.")

    class Meta:
        model = AuditEvent
        fields = ("id", "created_at", "action", "actor", "target", "detail")
        read_only_fields = fields


class QuotaUsageSerializer(serializers.Serializer):
    limit = serializers.IntegerField(allow_null=True, help_text="null: unlimited")
    used = serializers.IntegerField()


class QuotasSerializer(serializers.Serializer):
    rooms = QuotaUsageSerializer(help_text="Rooms owned.")
    concurrent_calls = QuotaUsageSerializer(help_text="Calls you are in at once.")
    call_minutes = QuotaUsageSerializer(help_text="Minutes in calls this calendar month (UTC).")


class MeSerializer(serializers.ModelSerializer):
    quotas = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ("id", "username", "display_name", "email", "date_joined", "quotas")
        read_only_fields = ("id", "username", "date_joined", "quotas")

    @extend_schema_field(QuotasSerializer)
    def get_quotas(self, user) -> dict:
        return quotas.summary(user)


class PasswordSerializer(serializers.Serializer):
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)
    user = UserSerializer(read_only=True)


class LoginFailureThrottle(SimpleRateThrottle):
    """Counts failed log-ins per client address; successful ones cost nothing."""

    scope = "login-failures"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def throttle_success(self):
        return True  # peeking only: failures are recorded by record_failure()

    def record_failure(self, request, view) -> None:
        key = self.get_cache_key(request, view)
        history = [t for t in self.cache.get(key, []) if t > self.timer() - self.duration]
        history.insert(0, self.timer())
        self.cache.set(key, history, self.duration)


class ObtainTokenView(APIView):
    """POST exchanges a username and password for an API token; DELETE revokes the caller's token."""

    throttle_classes = [LoginFailureThrottle]

    def get_permissions(self):
        return [IsAuthenticated()] if self.request.method == "DELETE" else [AllowAny()]

    def get_throttles(self):
        return [LoginFailureThrottle()] if self.request.method == "POST" else super().get_throttles()

    @extend_schema(summary="Exchange a username and password for an API token", request=CredentialsSerializer,
                   responses={200: TokenSerializer}, auth=[],
                   description="Send the token as `Authorization: Token <token>`. Failed attempts are throttled "
                               "per client address (429); after 5 failures for one username from one address, "
                               "every attempt is refused with 429 for 15 minutes.")
    def post(self, request):
        credentials = CredentialsSerializer(data=request.data)
        credentials.is_valid(raise_exception=True)
        # The HttpRequest, not DRF's wrapper: django-axes marks a locked-out attempt on it, and its middleware
        # answers 429 (accounts.security.locked_out).
        user = authenticate(request._request, **credentials.validated_data)
        if user is None or not user.is_active:
            LoginFailureThrottle().record_failure(request, self)
            return Response(
                {"detail": "Unable to log in with the provided credentials."}, status=status.HTTP_400_BAD_REQUEST
            )
        # A log-in like the site's: django-axes records it and clears the failures; last_login is updated.
        user_logged_in.send(sender=type(user), request=request._request, user=user)
        token = services.create_token(user=user, address=client_ip(request))
        return Response(TokenSerializer({"token": token.key, "user": user}).data)

    @extend_schema(summary="Revoke the caller's API token", responses={204: OpenApiResponse(description="Revoked.")})
    def delete(self, request):
        services.revoke_token(user=request.user, address=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """The authenticated user, with their quotas. PATCH changes the display name or e-mail; DELETE deletes the
    account (the password confirms it)."""

    @extend_schema(summary="The authenticated user, with their quotas' limits and use", responses={200: MeSerializer})
    def get(self, request):
        return Response(MeSerializer(request.user).data)

    @extend_schema(summary="Change the display name or e-mail", request=MeSerializer, responses={200: MeSerializer})
    def patch(self, request):
        serializer = MeSerializer(request.user, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response(serializer.data)

    @extend_schema(summary="Delete your account (send your password)", request=PasswordSerializer,
                   responses={204: OpenApiResponse(description="Deleted."),
                              400: OpenApiResponse(description="No password sent."),
                              403: OpenApiResponse(description="Wrong password.")},
                   description="Your rooms are deleted (their live calls closed), your connections end, and your "
                               "rows in other people's call logs stay, anonymised. POST /api/me/delete/ does the same "
                               "for clients that cannot send a body with DELETE.")
    def delete(self, request):
        confirmation = PasswordSerializer(data=request.data)
        confirmation.is_valid(raise_exception=True)
        if not request.user.check_password(confirmation.validated_data["password"]):
            return Response({"code": "wrong-password", "detail": "The password is not right."},
                            status=status.HTTP_403_FORBIDDEN)
        services.delete_account(user=request.user, address=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeDeleteView(MeView):
    """POST /api/me/delete/: DELETE /api/me/ for clients that send no body with DELETE."""

    http_method_names = ["post", "options"]

    @extend_schema(summary="Delete your account (send your password)", request=PasswordSerializer,
                   responses={204: OpenApiResponse(description="Deleted."),
                              400: OpenApiResponse(description="No password sent."),
                              403: OpenApiResponse(description="Wrong password.")})
    def post(self, request):
        return self.delete(request)


class MeExportView(APIView):
    """Everything Parley holds about the caller, as JSON (also a download on the profile page)."""

    @extend_schema(summary="Download your data (profile, rooms, memberships, call history, audit events)",
                   responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        audit.record(audit.Action.ACCOUNT_EXPORTED, actor=request.user, target=f"user:{request.user.pk}",
                     address=client_ip(request), via="api")
        data = export_user_data(request.user)
        return Response(data, headers={"Content-Disposition": 'attachment; filename="parley-export.json"'})
