"""Who may alert whom, refusals as clear gRPC errors, and every refusal audited."""

from __future__ import annotations

import time

import grpc
import jwt
import pytest
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.alerting.auth import key_id
from tests.services.alerting.conftest import (
    ISSUER,
    JWT_KEY,
    LOGIN_MAX_FAILURES,
    ZONE_INSIDE,
    ZONE_OUTSIDE,
    Client,
    Harness,
    bearer,
    spec,
)


async def create(client: Client, alert_spec: pb.AlertSpec, key: str = "key-00000001") -> pb.Alert:
    """CreateAlert as `client`."""
    return await client.alerts.CreateAlert(
        pb.CreateAlertRequest(idempotency_key=key, spec=alert_spec), metadata=client.metadata
    )


async def refused(client: Client, alert_spec: pb.AlertSpec) -> grpc.aio.AioRpcError:
    """The error CreateAlert answers."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(client, alert_spec)
    return info.value


async def last_audit(harness: Harness) -> dict[str, object]:
    """The newest audit entry."""
    row = await harness.pool.fetchrow("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1")
    assert row is not None
    return dict(row)


async def test_type1_may_alert_a_zone_inside_its_territory(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    alert = await create(client, spec(zone=ZONE_INSIDE))
    assert alert.state == pb.ALERT_STATE_DRAFT
    assert alert.entity_id == gent.id
    assert alert.created_by == "mayor.gent"


async def test_type1_outside_its_territory_is_refused_and_audited(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    error = await refused(client, spec(zone=ZONE_OUTSIDE))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "outside the territory of Stad Gent" in (error.details() or "")
    entry = await last_audit(harness)
    assert entry["action"] == "CreateAlert"
    assert entry["result"] == "PERMISSION_DENIED"
    assert entry["username"] == "mayor.gent"
    assert entry["entity_id"] == gent.id
    assert str(entry["peer"]).startswith("ipv4:127.0.0.1")


async def test_type2_may_not_alert_the_population(harness: Harness) -> None:
    police = await harness.entity("Politiezone Gent", type=2, territory="")
    client = await harness.issuer(police.id, "chief.police")
    error = await refused(client, spec(zone=ZONE_INSIDE))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "only its own groups" in (error.details() or "")


async def test_type2_may_alert_its_own_groups_only(harness: Harness) -> None:
    police = await harness.entity("Politiezone Gent", type=2, territory="")
    other = await harness.entity("Buurtinformatienetwerk", type=2, territory="")
    own = await harness.group(police.id, "Crisiscel")
    foreign = await harness.group(other.id, "Buren")
    client = await harness.issuer(police.id, "chief.police")
    alert = await create(client, spec(zone="", groups=(own,), kind=pb.ALERT_KIND_GENERAL_INTEREST))
    assert list(alert.spec.group_ids) == [own]
    error = await refused(client, spec(zone="", groups=(own, foreign)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == f"spec.group_ids: groups {foreign} are not groups of Politiezone Gent"


async def test_type1_may_alert_its_groups(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    group = await harness.group(gent.id, "Crisiscel")
    client = await harness.issuer(gent.id, "mayor.gent")
    alert = await create(client, spec(zone=ZONE_INSIDE, groups=(group,)))
    assert list(alert.spec.group_ids) == [group]


async def test_lb_sms_and_cell_broadcast_only_for_threatening_danger(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    for channel in (pb.CHANNEL_LB_SMS, pb.CHANNEL_CELL_BROADCAST):
        error = await refused(
            client, spec(kind=pb.ALERT_KIND_GENERAL_INTEREST, channels=(pb.CHANNEL_SMS, channel))
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "only for emergencies" in (error.details() or "")
    alert = await create(
        client, spec(channels=(pb.CHANNEL_SMS, pb.CHANNEL_LB_SMS, pb.CHANNEL_CELL_BROADCAST))
    )
    assert alert.state == pb.ALERT_STATE_DRAFT


async def test_malformed_requests_name_the_field(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    cases = {
        "spec.infos": spec(languages=()),
        "spec.infos[0].language": spec(languages=("xx",)),
        "spec.channels": spec(channels=()),
        "spec.zone_geojson": spec(zone="", groups=()),
    }
    for field, bad in cases.items():
        error = await refused(client, bad)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert (error.details() or "").startswith(f"{field}: "), error.details()
    lb_without_zone = spec(zone="", groups=(1,), channels=(pb.CHANNEL_LB_SMS,))
    assert (await refused(client, lb_without_zone)).code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_calls_without_a_valid_token_are_refused_and_audited(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    stub = client.alerts
    request = pb.ListAlertsRequest()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListAlerts(request)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    now = int(time.time())
    kid = {"kid": key_id(JWT_KEY)}
    expired = jwt.encode(
        {"sub": "2", "iss": ISSUER, "iat": now - 7200, "exp": now - 60, "gen": 0},
        JWT_KEY,
        algorithm="HS256",
        headers=kid,
    )
    # Signed with another key, though it names ours.
    forged = jwt.encode(
        {"sub": "1", "iss": ISSUER, "iat": now, "exp": now + 60, "gen": 0},
        "another-key-of-at-least-32-characters!",
        algorithm="HS256",
        headers=kid,
    )
    for token, reason in ((expired, "expired"), (forged, "invalid token")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListAlerts(request, metadata=bearer(token))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert reason in (info.value.details() or "")
    entry = await last_audit(harness)
    assert entry["action"] == "ListAlerts"
    assert entry["result"] == "UNAUTHENTICATED"


async def test_wrong_password_and_disabled_account(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    client = await harness.issuer(gent.id, "mayor.gent")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.login("mayor.gent", "wrong password!!")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    users = await harness.admin.admin.ListUsers(
        pb.ListUsersRequest(entity_id=gent.id), metadata=harness.admin.metadata
    )
    await harness.admin.admin.DisableUser(
        pb.DisableUserRequest(user_id=users.users[0].id), metadata=harness.admin.metadata
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.alerts.ListAlerts(pb.ListAlertsRequest(), metadata=client.metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stored = await harness.pool.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", users.users[0].id
    )
    assert stored.startswith("scrypt$")
    assert "correct horse" not in stored


async def test_issuers_may_not_administer_nor_see_other_entities_alerts(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    gent_client = await harness.issuer(gent.id, "mayor.gent")
    other = await harness.entity("Gemeente Merelbeke")
    other_client = await harness.issuer(other.id, "mayor.merelbeke")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gent_client.admin.ListEntities(
            pb.ListEntitiesRequest(), metadata=gent_client.metadata
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    alert = await create(gent_client, spec())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await other_client.alerts.GetAlert(
            pb.GetAlertRequest(alert_id=alert.id), metadata=other_client.metadata
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await other_client.alerts.ListAlerts(
        pb.ListAlertsRequest(), metadata=other_client.metadata
    )
    assert list(listed.alerts) == []
    own = await gent_client.alerts.ListAlerts(pb.ListAlertsRequest(), metadata=gent_client.metadata)
    assert [a.id for a in own.alerts] == [alert.id]


async def test_guessing_passwords_locks_the_name_out(harness: Harness) -> None:
    gent = await harness.entity("Stad Gent")
    await harness.issuer(gent.id, "mayor.gent")
    for _ in range(LOGIN_MAX_FAILURES):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await harness.login("mayor.gent", "a wrong guess!")
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.login("mayor.gent")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    entry = await last_audit(harness)
    assert (entry["action"], entry["target"], entry["result"]) == (
        "Login",
        "mayor.gent",
        "RESOURCE_EXHAUSTED",
    )
    await harness.login("admin")  # other names are not affected
