"""OpenAPI generation (drf-spectacular): every operation documents the error responses it can give."""

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from accounts.authentication import TOKEN_HELP


class ErrorSerializer(serializers.Serializer):
    """What every error but a validation error looks like."""

    detail = serializers.CharField()


# Field errors ({"name": ["This field is required."]}) or {"detail": "..."}; keys depend on the request body.
VALIDATION_ERROR = {
    "type": "object",
    "description": 'Field errors, `{"<field>": ["<message>", ...]}`, or `{"detail": "<message>"}`.',
    "additionalProperties": {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
}

ERROR_DESCRIPTIONS = {
    "400": "Validation failed.",
    "401": "Not authenticated: no or an invalid token or session.",
    "403": "Authenticated, but the caller's role does not allow this (or the CSRF check of a session failed).",
    "404": "No such object, or a private room the caller does not belong to.",
    "409": "Conflict with existing data.",
    "429": "Throttled: too many requests. `Retry-After` says when to try again.",
}


class AutoSchema(openapi.AutoSchema):
    """Adds the standard errors: 400 for bodies and filtered lists, 401/403 unless anonymous callers are welcome,
    404 for anything addressed by path or paginated, 429 everywhere; views list extra ones in `extra_error_codes`
    (an action name -> codes map, e.g. {"create": ["409"]})."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = {"429"}
        is_list = self._is_list_view()
        if (self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None) or is_list:
            codes.add("400")
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes |= {"401", "403"}
        if "{" in self.path or (is_list and self._get_paginator()):
            codes.add("404")
        action = getattr(self.view, "action", None) or self.method.lower()
        codes |= set(getattr(self.view, "extra_error_codes", {}).get(action, ()))
        for code in sorted(codes):
            if code in responses:
                continue
            body = VALIDATION_ERROR if code == "400" else ErrorSerializer
            responses[code] = self._get_response_for_code(body, code, direction=direction)
            responses[code]["description"] = ERROR_DESCRIPTIONS[code]
        return responses


class TokenScheme(OpenApiAuthenticationExtension):
    """The Swagger/ReDoc security scheme of the token, explained (drf-spectacular picks it over its own)."""

    target_class = "accounts.authentication.TokenAuthentication"
    name = "tokenAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization", "description": TOKEN_HELP}
