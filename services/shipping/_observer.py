"""What the shipper reports about its work, to whoever counts it (the daemon's metrics).

A Protocol the shipping package owns, so shipping never imports the operations side: the
daemon passes its ``Metrics`` in; replay and tests leave the silent default.
"""

from __future__ import annotations

from typing import Protocol


class DeliveryObserver(Protocol):
    """Called synchronously from delivery rounds; must be cheap and must not raise."""

    def attempted(self, outcome: str) -> None:
        """One request to the Manager ended with this outcome."""

    def turn_event(self, event: str, count: int = 1) -> None:
        """Turns reached a state: delivered, parked or dead_letter."""

    def delivered_after(self, seconds: float) -> None:
        """A turn was delivered this long after it was captured."""

    def request_took(self, seconds: float) -> None:
        """One request to the Manager took this long, answered or not."""


class SilentObserver:
    """Counts nothing: for replay runs and anything else without a metrics registry."""

    def attempted(self, outcome: str) -> None:
        pass

    def turn_event(self, event: str, count: int = 1) -> None:
        pass

    def delivered_after(self, seconds: float) -> None:
        pass

    def request_took(self, seconds: float) -> None:
        pass
