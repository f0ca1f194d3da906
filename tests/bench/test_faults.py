"""The fault-injection benchmark, small: every fault of a default run injected, nothing lost or
stale, duplicates within the window of what each fault killed or cut (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.faults import (
    DEFAULT_FAULTS,
    EXPIRING_PER_OPERATOR,
    FAULTS,
    IN_FLIGHT_LEAD_S,
    KILLED_LEAD_S,
    _attribute,
    _sampled,
    cbc_accounting,
    expiring_offset,
)
from bench.realtime import prioritise
from tests.bench.conftest import run_bench


def _run(tmp_path: Path, small: str, *, timeout_s: float) -> dict[str, Any]:
    """`python -m bench.faults <small>`: its figures, once it exited 0."""
    out = tmp_path / "faults.json"
    done = run_bench("bench.faults", [*small.split(), "--out", str(out)], timeout_s=timeout_s)
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    assert done.returncode == 0, json.dumps(figures, indent=1)
    return figures


#: The faults sent as alerts through alerting and targeting (their own figures).
ALERT_FAULTS = ("alerting_kill9", "targeting_kill9", "priority_alert")


# Eleven faults one after another, each with its recovery, alerting and targeting started and
# seeded: about two minutes alone, more on a busy machine.
@pytest.mark.timeout(330)
def test_a_small_campaign_survives_every_injected_fault(tmp_path: Path) -> None:
    # 20,000 SMS at 300/s outlast eleven faults of 1.5 s, their recoveries and the alerts'.
    small = (
        "--n 20000 --rate 100 --fault-s 1.5 --normal-s 1 --recovery-max-s 10 --stall-s 45"
        " --max-in-flight 1000 --alert-recipients 90 --resolve-recipients 600"
        " --alert-timeout-s 60"
    )
    figures = _run(tmp_path, small, timeout_s=320)
    assert figures["faults_injected"] == list(DEFAULT_FAULTS)
    assert figures["lost"] == 0
    assert figures["stale_sent"] == 0
    for key in (
        "max_recovery_s",
        "min_other_operators_rate_share",
        "duplicates_over_bound",
        "emergency_first_sms_ms",
        "rate_share_under_cpu_load",
    ):
        assert key in figures
    by_name = {f["fault"]: f for f in figures["faults"]}
    for fault in figures["faults"]:
        assert set(fault) >= {
            "lost",
            "duplicates",
            "duplicates_bound",
            "stale_sent",
            "recovery_s",
            "other_operators_rate_share",
        }
        assert fault["duplicates"] <= fault["duplicates_bound"], fault
    for name in ALERT_FAULTS:
        assert by_name[name]["alert_completed"], by_name[name]
        assert by_name[name]["alert_lost"] == 0, by_name[name]
    assert by_name["priority_alert"]["emergency_first_sms_ms"] is not None
    assert figures["rate_share_under_cpu_load"] > 0


def test_every_default_fault_is_registered() -> None:
    assert set(DEFAULT_FAULTS) <= set(FAULTS)
    assert "redis_lost" in FAULTS


def test_a_duplicate_is_blamed_on_the_fault_before_its_first_copy() -> None:
    faults: list[dict[str, Any]] = [
        {"started_at": 100.0, "lead_s": KILLED_LEAD_S},
        {"started_at": 200.0, "lead_s": IN_FLIGHT_LEAD_S},
        {"started_at": 201.5, "lead_s": IN_FLIGHT_LEAD_S},
    ]
    repeats = [
        (50.0, 1),  # before any fault
        (99.0, 2),  # handed over just before the first fault killed its sender
        (150.0, 1),  # during the first fault (its second copy may leave after 200)
        (199.8, 4),  # in the window when the second fault cut the link
        (250.0, 3),  # during the third
    ]
    before = _attribute(faults, repeats)
    assert before == 1
    assert [f["duplicates"] for f in faults] == [3, 4, 3]


def test_a_killed_process_s_duplicates_are_not_blamed_on_the_fault_after_it() -> None:
    # sms_kill9 at 100, pg_restart 1.5 s later: the killed process's unrecorded copies left
    # up to KILLED_LEAD_S before the kill, within pg_restart's reach were its lead as long.
    faults: list[dict[str, Any]] = [
        {"started_at": 100.0, "lead_s": KILLED_LEAD_S},
        {"started_at": 101.5, "lead_s": FAULTS["pg_restart"].lead_s},
    ]
    before = _attribute(faults, [(99.8, 5), (100.9, 2)])
    assert before == 0
    assert [f["duplicates"] for f in faults] == [7, 0]


# A population to load, alerting and targeting to start, one fault: about 40 s alone. Written
# straight onto the stream (--campaign stream), the same run loses about 5,000 of its 15,000
# recipients: the SMS process had read only part of the stream when Redis lost it.
@pytest.mark.timeout(240)
def test_the_duplicate_sample_holds_the_first_of_every_burst() -> None:
    # Two bursts of repeats 200 s apart (sms_kill9's window, then another fault's), a destination
    # that arrived once; the sample must show the second burst too, not only the first five.
    arrivals = {f"a{i}": [100.0 + i / 100, 300.0] for i in range(8)}
    arrivals |= {f"b{i}": [300.0 + i / 100, 500.0] for i in range(8)}
    arrivals["once"] = [150.0]
    assert _sampled(arrivals) == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_each_fault_s_expiring_alert_has_numbers_of_its_own() -> None:
    # Chosen by a salted hash before, two faults' alerts shared their numbers in about two runs
    # of five: each of those numbers got two alerts, counted as duplicates.
    blocks = [
        range(expiring_offset(i), expiring_offset(i) + EXPIRING_PER_OPERATOR * 3)
        for i in range(len(DEFAULT_FAULTS))
    ]
    numbers = [n for block in blocks for n in block]
    assert len(set(numbers)) == len(numbers)
    assert min(numbers) >= 900_000  # above a campaign of up to 900,000


def test_a_campaign_sent_as_an_alert_is_re_derived_when_redis_loses_its_data(
    tmp_path: Path,
) -> None:
    small = (
        "--campaign alert --n 15000 --rate 500 --fault-s 1.5 --normal-s 1 --recovery-max-s 10"
        " --stall-s 30 --max-in-flight 100 --faults redis_lost"
    )
    figures = _run(tmp_path, small, timeout_s=230)
    assert figures["faults_injected"] == ["redis_lost"]
    # What targeting queued for the alert, every one of them delivered: the entries Redis lost
    # unread were resolved again from PostgreSQL, and nobody the SMS process still held sent
    # twice (the re-resolution queued them again: 830 duplicates before the consumer knew).
    assert figures["n"] > 0
    assert figures["states"] == {"delivered": figures["n"]}
    assert figures["lost"] == 0
    assert figures["stale_sent"] == 0
    assert figures["duplicates_over_bound"] == 0


# The e-mail and voice processes with their peers beside alerting and targeting, one fault each:
# about 60 s alone. The relay answers each RCPT and DATA after 50 ms, so that 120 e-mails in
# transactions of 10 on 2 connections take a few seconds; 30 calls on 10 trunk channels ring 1 s
# each: both kills land mid-alert.
@pytest.mark.timeout(200)
def test_alerts_survive_a_kill_9_of_the_email_and_voice_processes(tmp_path: Path) -> None:
    small = (
        "--n 12000 --rate 100 --fault-s 1.5 --normal-s 1 --recovery-max-s 10 --stall-s 30"
        " --max-in-flight 300 --email-recipients 120 --email-relay-delay-s 0.05"
        " --voice-recipients 30 --voice-channels 10 --alert-timeout-s 60"
        " --faults email_kill9 voice_kill9"
    )
    figures = _run(tmp_path, small, timeout_s=190)
    assert figures["faults_injected"] == ["email_kill9", "voice_kill9"]
    for fault in figures["faults"]:
        assert fault["killed_mid_alert"], fault
        assert fault["alert_completed"], fault
        assert fault["alert_lost"] == 0, fault
        assert fault["duplicates"] <= fault["duplicates_bound"], fault
    email, voice = figures["faults"]
    assert email["relay_lost"] == 0, email
    assert voice["trunk_lost"] == 0, voice
    assert figures["duplicates_over_bound"] == 0


def test_cbc_accounting_counts_lost_operators_repeated_creates_and_second_broadcasts() -> None:
    expected = {4375, 4388}
    seen: dict[str, list[tuple[str, int | None, int]]] = {
        # The kill cut 4375's answer: created again, 409 (the CBC holds it); then withdrawn.
        "a": [
            ("POST", 4375, 201),
            ("POST", 4375, 409),
            ("POST", 4388, 201),
            ("DELETE", 4375, 200),
            ("DELETE", 4388, 200),
        ],
        # 4388 refused for good, never created: this operator never got the whole alert.
        "b": [("POST", 4375, 201), ("POST", 4388, 400), ("DELETE", 4375, 200)],
        # Deleted and created again: broadcast twice; the second copy still held at the end.
        "c": [
            ("POST", 4375, 201),
            ("POST", 4388, 201),
            ("DELETE", 4375, 200),
            ("POST", 4375, 201),
            ("POST", 9999, 201),  # another alert's identifier: not counted
        ],
    }
    assert cbc_accounting(seen, expected) == {
        "cbc_operators_lost": 1,
        "cbc_duplicates": 1,
        "cbc_repeat_creates": 2,
        "cbc_messages_active": 2,
    }


# PostgreSQL, Redis, the SMS process, alerting, targeting and the cell broadcast process with a
# CBC simulator per operator, one fault: about 30 s alone.
@pytest.mark.timeout(200)
def test_a_broadcast_survives_a_kill_9_of_the_cell_broadcast_process(tmp_path: Path) -> None:
    small = (
        "--n 6000 --rate 100 --fault-s 1.5 --normal-s 1 --recovery-max-s 10 --stall-s 30"
        " --max-in-flight 300 --alert-timeout-s 30 --faults cellbroadcast_kill9"
    )
    figures = _run(tmp_path, small, timeout_s=190)
    assert figures["faults_injected"] == ["cellbroadcast_kill9"]
    (fault,) = figures["faults"]
    # Killed once the first create was taken, its answer held back: the creates it never heard
    # answered are sent again by its successor, and refused 409 as a repeat.
    assert fault["cbc_created_at_kill"] >= 1, fault
    assert fault["killed_mid_broadcast"], fault
    assert fault["broadcast_completed"], fault
    assert fault["withdrawn_s"] is not None, fault
    expected = set(fault["cbc_message_ids"])
    assert len(expected) == 2  # four languages: the first's identifier, the others' one
    requests = fault["cbc_requests"]
    assert len(requests) == fault["cbc_operators"] == 3
    # The figures again, from what the simulators saw.
    lost = duplicates = repeats = conflicts = 0
    for seen in requests.values():
        creates = Counter(i for method, i, status in seen if method == "POST" and status == 201)
        posts = Counter(i for method, i, _ in seen if method == "POST")
        deletes = Counter(i for method, i, status in seen if method == "DELETE" and status == 200)
        lost += not expected <= set(creates)
        duplicates += sum(n - 1 for n in creates.values())
        repeats += sum(n - 1 for n in posts.values())
        conflicts += sum(1 for method, _, status in seen if method == "POST" and status == 409)
        assert deletes == creates, seen  # every broadcast withdrawn
    assert conflicts >= 1, requests
    assert (fault["cbc_operators_lost"], fault["alert_lost"]) == (lost, lost) == (0, 0)
    assert (fault["cbc_duplicates"], fault["duplicates"]) == (duplicates, duplicates) == (0, 0)
    assert fault["cbc_repeat_creates"] == repeats == conflicts
    assert repeats <= fault["cbc_repeat_creates_bound"]
    assert fault["cbc_messages_active"] == 0
    assert fault["alert_stale_sent"] == fault["stale_sent"] == figures["stale_sent"] == 0
    assert fault["cb_states_withdrawn"] == {"broadcast/withdrawn": 3, "withdraw/accepted": 3}
    assert figures["lost"] == 0
    assert figures["duplicates_over_bound"] == 0


def test_a_simulator_process_s_threads_go_real_time_and_back() -> None:
    # A process with a second thread, as the SMSC simulators' (the event loop and others).
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading, time; threading.Thread(target=time.sleep,"
            " args=(30,)).start(); print(flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    ) as child:
        try:
            assert child.stdout is not None
            child.stdout.readline()  # both threads up
            tids = [int(t.name) for t in Path(f"/proc/{child.pid}/task").iterdir()]
            assert len(tids) >= 2
            got = prioritise("fifo", child.pid)
            # FIFO where this test may set it (CAP_SYS_NICE, an RLIMIT_RTPRIO), else as usual.
            want = os.SCHED_FIFO if got == "fifo" else os.SCHED_OTHER
            assert got in ("fifo", "normal")
            assert {os.sched_getscheduler(t) for t in tids} == {want}
            assert prioritise("normal", child.pid) == "normal"
            assert {os.sched_getscheduler(t) for t in tids} == {os.SCHED_OTHER}
        finally:
            child.kill()
