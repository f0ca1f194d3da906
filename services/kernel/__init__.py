"""The serving kernel shared by every service: settings, serving, health, errors, metrics."""

from services.kernel.serve import Kernel, run_service, serve
from services.kernel.settings import ServiceSettings, SettingsError, load_settings

__all__ = ["Kernel", "ServiceSettings", "SettingsError", "load_settings", "run_service", "serve"]
