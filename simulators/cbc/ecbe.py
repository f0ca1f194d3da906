"""The ECBE request checks of osmo-cbc, written from its documented rules (docs/cellbroadcast.md).

Each check answers 400 with a text naming the field, as osmo-cbc's `rest_api.c` does; only the
rules matter here, not its wording.
"""

from __future__ import annotations

from typing import Any

GEO_SCOPES = ("cell_wide_immediate", "plmn_wide", "lac_sac_tac_wide", "cell_wide")
CATEGORIES = ("normal", "high_priority", "background")
PAGE_OCTETS = 82


class BadRequest(ValueError):
    """A request osmo-cbc would answer 400."""


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, *, required: bool) -> int | None:
    if key not in obj:
        if required:
            raise BadRequest(f"'{key}' is mandatory")
        return None
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"'{key}' must be an integer")
    if not lo <= value <= hi:
        raise BadRequest(f"'{key}' out of range")
    return value


def check_message(body: Any, *, plmn_only: bool) -> dict[str, Any]:
    """The message's decoded fields, or BadRequest naming what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("CBCMSG must be JSON object")
    if not isinstance(body.get("cbe_name"), str):
        raise BadRequest("CBCMSG 'cbe_name' is mandatory")
    category = body.get("category", "normal")
    if category not in CATEGORIES:
        raise BadRequest("CBCMSG 'category' unknown")
    _int(body, "repetition_period", 0, 4095, required=True)
    _int(body, "num_of_bcast", 0, 65535, required=False)
    _int(body, "warning_period_sec", 0, 65535, required=False)
    scope = body.get("scope")
    if not isinstance(scope, dict):
        raise BadRequest("CBCMSG 'scope' is mandatory")
    cells: list[str] = []
    if "scope_plmn" in scope:
        pass
    elif "scope_cells" in scope and not plmn_only:
        given = scope["scope_cells"].get("cells") if isinstance(scope["scope_cells"], dict) else []
        if not isinstance(given, list) or not given or not all(isinstance(c, str) for c in given):
            raise BadRequest("'scope_cells' needs a non-empty 'cells' array of strings")
        cells = given
    else:
        raise BadRequest("CBCMSG only 'scope_plmn' supported" if plmn_only else "'scope' unknown")
    msg = body.get("smscb_message")
    if not isinstance(msg, dict):
        raise BadRequest("CBCMSG 'smscb_message' is mandatory")
    serial = msg.get("serial_nr")
    if not isinstance(serial, dict):
        raise BadRequest("'serial_nr' must be present and an object")
    decoded = serial.get("serial_nr_decoded")
    if not isinstance(decoded, dict):
        raise BadRequest("'serial_nr_decoded' expected")
    if decoded.get("geo_scope") not in GEO_SCOPES:
        raise BadRequest("'geo_scope' is invalid")
    msg_code = _int(decoded, "msg_code", 0, 1023, required=True)
    update_nr = _int(decoded, "update_nr", 0, 15, required=True)
    message_id = _int(msg, "message_id", 0, 65535, required=True)
    payload = msg.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("payload_encoded"), dict):
        raise BadRequest("'payload_encoded' expected")
    encoded = payload["payload_encoded"]
    dcs = _int(encoded, "dcs", 0, 255, required=True)
    pages = encoded.get("pages")
    if not isinstance(pages, list):
        raise BadRequest("'pages' absent or not an array")
    if not 1 <= len(pages) <= 15:
        raise BadRequest("'pages' array size out of range")
    raw: list[bytes] = []
    for page in pages:
        if not isinstance(page, str) or len(page) > PAGE_OCTETS * 2:
            raise BadRequest("'pages' must contain hex strings of up to 82 octets")
        try:
            raw.append(bytes.fromhex(page))
        except ValueError:
            raise BadRequest("'pages' array must contain hex strings") from None
    return {
        "cbe_name": body["cbe_name"],
        "category": category,
        "message_id": message_id,
        "geo_scope": decoded["geo_scope"],
        "msg_code": msg_code,
        "update_nr": update_nr,
        "dcs": dcs,
        "pages": raw,
        "cells": cells,
    }
