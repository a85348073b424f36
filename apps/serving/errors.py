"""This app's refusals, each carrying its docs/api.md code."""

from __future__ import annotations

from apps.core.errors import ApplicationError, NotFound, RateLimited


class NoProductionVersion(NotFound):
    code = "no_production_version"
    default_message = "This model has no production version; name one with ?version=."


class PrivacyBudgetExhausted(RateLimited):
    code = "privacy_budget_exhausted"
    default_message = "Your daily privacy budget cannot cover this call; it resets at midnight UTC."


class PredictionFailed(ApplicationError):
    """The model raised on rows that passed the schema: the caller's input is at fault as far
    as the caller can tell, and nothing of the model's internals is shown."""

    status_code = 400
    code = "invalid_input"
    default_message = "The model could not predict on these inputs."
