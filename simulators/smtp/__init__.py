"""An SMTP relay simulator (aiosmtpd) with per-address refusals, slowness, drops and bounces."""

from simulators.smtp.config import RelayConfig
from simulators.smtp.server import RelaySimulator

__all__ = ["RelayConfig", "RelaySimulator"]
