"""Every request's text is checked for control characters, at any depth, naming the field."""

from __future__ import annotations

import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb
from tocsin.targeting.v1 import targeting_pb2 as tpb

from services.kernel.errors import InvalidArgument
from services.kernel.inputs import check_request


def _field(message: object) -> str | None:
    with pytest.raises(InvalidArgument) as info:
        check_request(message)
    return info.value.field


def test_nested_and_repeated_fields_are_named() -> None:
    spec = pb.AlertSpec(infos=[pb.Info(headline="ok"), pb.Info(description="a\x0bb")])
    assert _field(pb.CreateAlertRequest(spec=spec)) == "spec.infos[1].description"
    assert _field(pb.LoginRequest(username="ad\x00min")) == "username"
    assert _field(tpb.PreviewRequest(texts={"nl": "x\x1by"})) == "texts['nl']"


def test_tabs_newlines_and_any_language_pass() -> None:
    text = "Blijf binnen.\n\tRestez à l'intérieur. Bleiben Sie drinnen! 🚨\r\n"
    check_request(pb.CreateAlertRequest(spec=pb.AlertSpec(infos=[pb.Info(description=text)])))
    check_request(b"raw bytes are not looked at")
