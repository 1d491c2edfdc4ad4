"""The back office's refusals, as a leaf module: what went wrong (a kind), never how a program
should exit. The command line maps each kind to its exit code at its edge
(tools/cli/errors.py EXIT_FOR_KIND); a service maps it to its own answer.

Every refusal of a workflow step is a WorkflowError whose message names the rule id or the
current state; the step's transaction was rolled back, so the store is unchanged.
"""
from __future__ import annotations

import enum

__all__ = ["ErrorKind", "InputError", "WorkflowError", "IllegalState", "Refused", "NotFound", "BadInput",
           "kind_of"]


class ErrorKind(str, enum.Enum):
    """What went wrong, in the domain's words (a str, so a batch event stays plain JSON)."""

    REFUSED = "refused"        # a rule or the card's current state forbids the step
    BAD_INPUT = "bad-input"    # input the rules of validate.py (docs/input-limits.md) or of a step refuse
    NOT_FOUND = "not-found"    # no such application / card id in the store
    BUSY = "busy"              # the store stayed locked by another process beyond the busy timeout


class InputError(ValueError):
    """Bad input at an edge (validate.py's rules, docs/input-limits.md). workflow.BadInput is one
    of these."""

    kind = ErrorKind.BAD_INPUT


class WorkflowError(Exception):
    """A refused operation; `kind` says what went wrong (REFUSED unless a subclass says else)."""

    kind = ErrorKind.REFUSED


class IllegalState(WorkflowError):
    """The card is in a state where the step is not allowed (the message names the state)."""


class Refused(WorkflowError):
    """A rule refuses the step (the message starts with the rule id)."""


class NotFound(WorkflowError):
    kind = ErrorKind.NOT_FOUND


class BadInput(WorkflowError, InputError):
    """Input the rules of validate.py (docs/input-limits.md) or of a step refuse."""

    kind = ErrorKind.BAD_INPUT


def kind_of(exc: BaseException) -> ErrorKind | None:
    """The kind of a domain error (a WorkflowError or an InputError); None for anything else."""
    kind = getattr(type(exc), "kind", None)
    return kind if isinstance(kind, ErrorKind) else None
