"""The serving kernel shared by every service: settings, serving, health, errors, metrics."""

from services.kernel.serve import Kernel, run_service, serve
from services.kernel.settings import ServiceSettings, SettingsError, load_settings
from services.kernel.tls import ClientSettings, connect, open_channel

__all__ = [
    "ClientSettings",
    "Kernel",
    "ServiceSettings",
    "SettingsError",
    "connect",
    "load_settings",
    "open_channel",
    "run_service",
    "serve",
]
