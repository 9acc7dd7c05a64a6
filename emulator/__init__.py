"""fcsync's stateful Stripe Financial Connections emulator: Stripe's wire format over HTTP,
plus a control API for time travel, fault injection and ground truth. See README.md."""

from __future__ import annotations

from emulator.config import EmulatorConfig, FaultSettings
from emulator.control import ControlError, EmulatorControl
from emulator.server import Emulator
from emulator.webhooks import signature_header

__all__ = [
    "ControlError",
    "Emulator",
    "EmulatorConfig",
    "EmulatorControl",
    "FaultSettings",
    "signature_header",
]
