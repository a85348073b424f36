"""The incident workflow as one small, explicit state machine (docs/api.md "Incidents"):

    detected → contained → investigating → remediated → recovered → closed
    closed → investigating (reopen)

Nothing else is a transition, but for one shortcut: an incident resolved as a false positive,
a duplicate or benign closes from any open phase (QUICK_CLOSE_RESOLUTIONS). Every transition
needs a note; closing a true positive (the default resolution) needs a post-mortem.
"""

from __future__ import annotations

from apps.core.errors import Conflict
from apps.incidents.models import Resolution, Status

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
# Resolutions that close from any open phase, with a note and no post-mortem: nothing
# happened that a post-mortem would explain (a benign incident is treated as a false
# positive: real activity, but nobody's fault and nothing to fix).
QUICK_CLOSE_RESOLUTIONS: tuple[str, ...] = (
    Resolution.FALSE_POSITIVE,
    Resolution.DUPLICATE,
    Resolution.BENIGN,
)
# Which timestamp field records entry into each phase.
PHASE_FIELD: dict[str, str] = {phase: f"{phase}_at" for phase in PHASES}


class InvalidTransition(Conflict):
    code = "invalid_transition"
    default_message = "This incident cannot move to that status from where it is."


def next_status(current: str) -> str:
    return TRANSITIONS[current]


def is_quick_close(current: str, to: str, resolution: str | None) -> bool:
    """Closing an open incident with a resolution that needs no walk through the phases."""
    return (
        to == Status.CLOSED and current != Status.CLOSED and resolution in QUICK_CLOSE_RESOLUTIONS
    )


def check_transition(current: str, to: str, resolution: str | None = None) -> None:
    """InvalidTransition (409) unless `to` is the one next status of `current`, or a close of
    an open incident with a resolution of QUICK_CLOSE_RESOLUTIONS."""
    if to not in PHASES:
        raise InvalidTransition(f"{to!r} is not a status; statuses are {', '.join(PHASES)}.")
    if is_quick_close(current, to, resolution):
        return
    if TRANSITIONS.get(current) != to:
        hint = (
            " A false positive, a duplicate or a benign incident closes from any open phase "
            "with that resolution."
            if to == Status.CLOSED and current != Status.CLOSED
            else ""
        )
        raise InvalidTransition(
            f"An incident that is {current} can only move to {TRANSITIONS[current]}, "
            f"not {to}.{hint}"
        )


def is_reopen(current: str, to: str) -> bool:
    return current == Status.CLOSED and to == Status.INVESTIGATING
