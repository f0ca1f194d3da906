"""One settings object per service, in its settings.py; `__main__` only wires."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from services.kernel import ServiceSettings

SERVICES = Path(__file__).resolve().parents[3] / "services"
MAINS = sorted(SERVICES.glob("*/__main__.py"))


@pytest.mark.parametrize("main", MAINS, ids=[m.parent.name for m in MAINS])
def test_every_service_has_its_settings_in_settings_py(main: Path) -> None:
    module = importlib.import_module(f"services.{main.parent.name}.settings")
    assert issubclass(module.Settings, ServiceSettings)


def test_no_other_module_defines_a_service_settings_class() -> None:
    defines = re.compile(r"^class \w+\(ServiceSettings\)", re.MULTILINE)
    elsewhere = [
        str(path.relative_to(SERVICES))
        for path in SERVICES.rglob("*.py")
        if path.name != "settings.py" and defines.search(path.read_text(encoding="utf-8"))
    ]
    assert elsewhere == []
