"""The incident workflow as one small, explicit state machine (docs/api.md "Incidents"):

    detected → contained → investigating → remediated → recovered → closed
    closed → investigating (reopen)

Nothing else is a transition; every transition needs a note, and closing needs a post-mortem.
"""

from __future__ import annotations

from apps.core.errors import Conflict
from apps.incidents.models import Status

PHASES: tuple[str, ...] = (
    Status.DETECTED,
    Status.CONTAINED,
    Status.INVESTIGATING,
    Status.REMEDIATED,
    Status.RECOVERED,
    Status.CLOSED,
)
TRANSITIONS: dict[str, str] = {
    Status.DETECTED: Status.CONTAINED,
    Status.CONTAINED: Status.INVESTIGATING,
    Status.INVESTIGATING: Status.REMEDIATED,
    Status.REMEDIATED: Status.RECOVERED,
    Status.RECOVERED: Status.CLOSED,
    Status.CLOSED: Status.INVESTIGATING,  # reopen
}
# Which timestamp field records entry into each phase.
PHASE_FIELD: dict[str, str] = {phase: f"{phase}_at" for phase in PHASES}


class InvalidTransition(Conflict):
    code = "invalid_transition"
    default_message = "This incident cannot move to that status from where it is."


def next_status(current: str) -> str:
    return TRANSITIONS[current]


def check_transition(current: str, to: str) -> None:
    """InvalidTransition (409) unless `to` is the one next status of `current`."""
    if to not in PHASES:
        raise InvalidTransition(f"{to!r} is not a status; statuses are {', '.join(PHASES)}.")
    if TRANSITIONS.get(current) != to:
        raise InvalidTransition(
            f"An incident that is {current} can only move to {TRANSITIONS[current]}, not {to}."
        )


def is_reopen(current: str, to: str) -> bool:
    return current == Status.CLOSED and to == Status.INVESTIGATING
