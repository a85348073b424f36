from apps.core.errors import ServiceUnavailable


class AuditUnavailable(ServiceUnavailable):
    """The event could not be written, so the action it records is refused (fail closed)."""

    default_message = "The audit trail cannot record this action right now; nothing was changed."
