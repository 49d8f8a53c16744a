"""API token authentication that says what is wrong with a token header, explained in the OpenAPI schema
(calls/schema.py).

Its own module: DRF imports the authentication classes while `rest_framework.views` is still loading, so this one
imports nothing of the views.
"""

from rest_framework import authentication, exceptions

MISSING_PREFIX = ('The Authorization header must be "Token <key>": the "Token " prefix is missing '
                  '(send "Authorization: Token {key}").')
TOKEN_HELP = (
    "Send your API token in the `Authorization` header as `Token <key>`: the word `Token`, one space, then the key "
    "(`Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b`). In Swagger's **Authorize** dialog paste "
    "the whole `Token <key>`, not the key alone. Get a key with `POST /api/auth/token/`. A bare key is refused "
    "with 401 and a message saying the prefix is missing."
)


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, which says what is wrong when the header carries a key without the prefix
    (DRF would ignore such a header and answer "Authentication credentials were not provided")."""

    def authenticate(self, request):
        words = authentication.get_authorization_header(request).split()
        if len(words) == 1:
            key = words[0].decode("latin-1")
            shown = f"{key[:4]}…" if len(key) > 8 else "<key>"
            raise exceptions.AuthenticationFailed(MISSING_PREFIX.format(key=shown))
        return super().authenticate(request)
