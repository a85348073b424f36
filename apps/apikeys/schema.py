"""OpenAPI description of X-API-Key authentication (used by the predict endpoint)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.apikeys.authentication.ApiKeyAuthentication"
    match_subclasses = True  # predict's own (apps.serving.views) is the same scheme
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": (
                "bwk_<public id>_<secret>. Keys with require_signature also need "
                "X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>."
            ),
        }
