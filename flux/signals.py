"""`Flux.wait`: what a handler returns to suspend its run until a signal arrives."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import WorkflowDefinitionError


@dataclass(frozen=True)
class WaitRequest:
    """Returned by a handler: suspend the run until `signal` is delivered."""

    signal: str


class Flux:
    """Helpers a handler uses to talk to the engine."""

    @staticmethod
    def wait(signal: str) -> WaitRequest:
        """Return this from a handler to suspend the run until `engine.signal(..., signal)`."""
        if not isinstance(signal, str) or not signal:
            raise WorkflowDefinitionError(f"Flux.wait({signal!r}): the signal must be a non-empty string")
        return WaitRequest(signal)
