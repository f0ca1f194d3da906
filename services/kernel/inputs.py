"""Checks every request's text before any service sees it: no control characters anywhere.

PostgreSQL refuses NUL in text, CAP XML cannot carry most C0 controls, and a control character
pasted from a word processor (a vertical tab) ends up in an SMS. Tab, newline and carriage
return are the only ones accepted. The refusal names the field as the request spells it
(`spec.infos[0].description`).
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.kernel.errors import InvalidArgument

#: C0 controls but tab, newline and carriage return; DEL; C1 controls; non-characters.
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


def _check_text(value: str, field: str) -> None:
    found = _FORBIDDEN.search(value)
    if found is not None:
        raise InvalidArgument(
            field,
            f"contains the control character U+{ord(found.group()):04X} at position"
            f" {found.start()}: remove it (pasted text often carries one)",
        )


def check_request(message: Any, prefix: str = "") -> None:
    """Refuse a request whose string fields, at any depth, carry a forbidden character."""
    if not isinstance(message, Message):
        return
    for fd, value in message.ListFields():
        name = f"{prefix}{fd.name}"
        if fd.type == _STRING:
            if fd.is_repeated:
                for i, item in enumerate(value):
                    _check_text(item, f"{name}[{i}]")
            else:
                _check_text(value, name)
        elif fd.type == _MESSAGE:
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    where = f"{name}[{key!r}]"
                    if isinstance(key, str):
                        _check_text(key, where)
                    if isinstance(item, str):
                        _check_text(item, where)
                    else:
                        check_request(item, f"{where}.")
            elif fd.is_repeated:
                for i, item in enumerate(value):
                    check_request(item, f"{name}[{i}].")
            else:
                check_request(value, f"{name}.")
