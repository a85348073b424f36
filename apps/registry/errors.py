from apps.core.errors import ServiceUnavailable


class ArtifactRefused(ServiceUnavailable):
    """A stored artifact failed its integrity check: a server-side failure the caller cannot
    fix, so 503 `service_unavailable` (API.md's closest code), with no detail of why."""

    default_message = "The model version's artifact failed its integrity check; it was not loaded."
