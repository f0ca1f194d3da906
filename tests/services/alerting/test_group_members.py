"""RemoveGroupMember: admins only, audited before it acts, and the contact erased everywhere."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from tocsin.alerting.v1 import alerting_pb2 as pb

from services.channel import keys
from tests.services.alerting.conftest import PASSWORD, Harness
from tests.services.alerting.test_cli import cli
from tests.services.channel import work

ALERT = "9a0f0000-0000-4000-8000-000000000001"
PHONE, EMAIL, OTHER = "+32470123401", "member@example.org", "+32470123402"


async def _member(harness: Harness, group_id: int, phone: str, email: str = "") -> int:
    reply = await harness.admin.admin.AddGroupMember(
        pb.AddGroupMemberRequest(
            group_id=group_id,
            name="Duty officer",
            phone=phone,
            email=email,
            language="nl",
            channels=[pb.CHANNEL_SMS, pb.CHANNEL_VOICE, *([pb.CHANNEL_EMAIL] if email else [])],
        ),
        metadata=harness.admin.metadata,
    )
    return int(reply.member_id)


async def _queued(redis: aioredis.Redis, channel: str) -> list[str]:
    found: Any = await redis.xrange(keys.stream(channel))
    return [a for _, fields in found for a, _ in json.loads(fields[b"to"])]


async def test_removing_a_member_erases_their_queued_work_and_deliveries_and_is_audited(
    harness: Harness, redis_client: aioredis.Redis
) -> None:
    entity = await harness.entity("Gent")
    group = await harness.group(entity.id, "Crisis cell")
    member = await _member(harness, group, PHONE, EMAIL)
    for channel in ("sms", "voice"):
        await work.add_work(
            redis_client, channel=channel, alert=ALERT, to=[PHONE, OTHER], texts={"nl": "x"}
        )
    await work.add_work(redis_client, channel="email", alert=ALERT, to=[EMAIL], texts={"nl": "x"})
    await harness.pool.execute(
        "INSERT INTO sms_messages (alert, version, address, operator, segments, state)"
        " VALUES ($1, 1, $2, 'opA', 1, 'delivered')",
        ALERT,
        PHONE,
    )

    await harness.admin.admin.RemoveGroupMember(
        pb.RemoveGroupMemberRequest(group_id=group, member_id=member),
        metadata=harness.admin.metadata,
    )

    assert await _queued(redis_client, "sms") == [OTHER]
    assert await _queued(redis_client, "voice") == [OTHER]
    assert await _queued(redis_client, "email") == []
    rows = await harness.pool.fetch("SELECT address FROM sms_messages")
    assert [r["address"].startswith("erased:") for r in rows] == [True]
    left = await harness.pool.fetchval(
        "SELECT count(*) FROM group_members WHERE group_id = $1", group
    )
    assert left == 1  # the group's first member stays
    audit = await harness.pool.fetch(
        "SELECT result, target, detail FROM audit_log WHERE action = 'RemoveGroupMember'"
        " ORDER BY seq"
    )
    assert [r["result"] for r in audit][-1] == "OK"
    assert len(audit) == 2  # the intent before, the outcome after
    assert {r["target"] for r in audit} == {f"group:{group}"}
    assert PHONE not in " ".join(r["detail"] for r in audit)

    with pytest.raises(grpc.aio.AioRpcError) as again:
        await harness.admin.admin.RemoveGroupMember(
            pb.RemoveGroupMemberRequest(group_id=group, member_id=member),
            metadata=harness.admin.metadata,
        )
    assert again.value.code() == grpc.StatusCode.NOT_FOUND
    assert "member_id" in (again.value.details() or "")


async def test_a_number_someone_else_still_holds_keeps_its_queued_work(
    harness: Harness, redis_client: aioredis.Redis
) -> None:
    entity = await harness.entity("Gent")
    first = await harness.group(entity.id, "Crisis cell")
    second = await harness.group(entity.id, "Neighbours")
    member = await _member(harness, first, PHONE)
    await _member(harness, second, PHONE)  # the same person in another group
    await work.add_work(redis_client, channel="sms", alert=ALERT, to=[PHONE], texts={"nl": "x"})

    await harness.admin.admin.RemoveGroupMember(
        pb.RemoveGroupMemberRequest(group_id=first, member_id=member),
        metadata=harness.admin.metadata,
    )

    assert await _queued(redis_client, "sms") == [PHONE]


async def test_only_admins_remove_members(harness: Harness) -> None:
    entity = await harness.entity("Gent")
    group = await harness.group(entity.id, "Crisis cell")
    member = await _member(harness, group, PHONE)
    issuer = await harness.issuer(entity.id, "gent-issuer")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await issuer.admin.RemoveGroupMember(
            pb.RemoveGroupMemberRequest(group_id=group, member_id=member),
            metadata=issuer.metadata,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await harness.pool.fetchval("SELECT count(*) FROM group_members WHERE id = $1", member)


async def test_the_operators_cli_removes_a_member(harness: Harness) -> None:
    entity = await harness.entity("Gent")
    group = await harness.group(entity.id, "Crisis cell")
    member = await _member(harness, group, PHONE)
    login = {"TOCSIN_USER": "admin", "TOCSIN_PASSWORD": PASSWORD}
    command = ("--target", harness.target, "group", "remove-member", "--group", str(group))
    code, out = await cli(*command, "--member", str(member), **login)
    assert code == 0, out
    assert f"member {member} removed" in out
    assert not await harness.pool.fetchval(
        "SELECT count(*) FROM group_members WHERE id = $1", member
    )
