from apps.core.errors import Conflict, ServiceUnavailable


class ArtifactRefused(ServiceUnavailable):
    """A stored artifact failed its integrity check or imports what it may not: a server-side
    failure the caller cannot fix, so 503 `service_unavailable` (docs/api.md's closest code), with
    no detail of why (the audit event `model.version.rejected` has it)."""

    default_message = "The model version's artifact failed its integrity check; it was not loaded."


class ModelRunnerFailed(ServiceUnavailable):
    """The model runner died, hung past its deadline or broke the protocol: it was stopped
    and the next call starts a new one (audited `model.runner.failed`)."""

    default_message = "The model's runner failed and was replaced; retry the request."


class ModelFailed(ServiceUnavailable):
    """The model raised something other than a refusal of its input while predicting."""

    default_message = "The model failed while predicting; the failure has been recorded."


class VersionQuarantined(Conflict):
    default_message = (
        "This version is quarantined: its artifact imports what is not allowed or failed its "
        "integrity check. It is never served or promoted."
    )
