"""The reference Manager follows the Manager API contract, over a real server and real MariaDB."""

import asyncio
import base64
import json
import signal
import socket
import sys
import time
import uuid
from datetime import datetime, timezone

import aiohttp
import pytest
import pytest_asyncio

from tests.kits import REPO
from tests.kits.mariadb import MariaDB, drop_database
from tests.reference_manager import HUGE_JSON_BYTES, UNAUTHORIZED_MSG, ReferenceManager

MAC = "68:25:dd:ba:39:78"
REPORT = "/agent/chat-history/report"
SESSION = "/agent/chat-history/session"
T_MS = 1_760_000_000_123
T_AT = datetime(2025, 10, 9, 8, 53, 20, 123000)
OK = {"code": 0, "msg": "success", "data": True}


@pytest_asyncio.fixture
async def client():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def manager(reference_manager):
    await reference_manager.bind_device(MAC)
    return reference_manager


def report(**overrides) -> dict:
    body = {"macAddress": MAC, "sessionId": "s1", "chatType": 1, "content": "hi", "reportTime": T_MS}
    body.update(overrides)
    return body


def auth(manager: ReferenceManager, **extra: str) -> dict:
    return {"Authorization": f"Bearer {manager.secret}", **extra}


async def post(client, manager, body, path=REPORT, headers=None) -> tuple[int, dict]:
    headers = auth(manager) if headers is None else headers
    async with client.post(manager.url + path, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def get(client, manager, path, headers=None) -> tuple[int, dict]:
    async with client.get(manager.url + path, headers=headers or {}) as response:
        return response.status, await response.json(content_type=None)


# --- report: success and created_at ---------------------------------------------------------

async def test_report_stores_row_with_exact_content_and_millisecond_report_time(client, manager):
    """A report is stored with its exact CJK/emoji text and created_at from reportTime in ms."""
    content = "你好，小智！🦖🎉 ça va? \u200d👨‍👩‍👧"
    assert await post(client, manager, report(content=content, chatType=2)) == (200, OK)
    [row] = await manager.rows()
    assert row == {"mac_address": MAC, "agent_id": "agent1", "session_id": "s1", "chat_type": 2,
                   "content": content, "audio_id": None, "created_at": T_AT}


async def test_report_time_in_seconds_is_multiplied_by_1000(client, manager):
    """With report_time_unit "s" the server reads seconds, as older upstream and the toy fork do."""
    manager.report_time_unit = "s"
    await post(client, manager, report(reportTime=T_MS // 1000))
    [row] = await manager.rows()
    assert row["created_at"] == T_AT.replace(microsecond=0)


async def test_created_at_column_keeps_milliseconds_in_utc(client, manager, mariadb_db):
    """The raw DATETIME(3) value in MariaDB is the UTC instant of reportTime to the millisecond."""
    await post(client, manager, report(reportTime=T_MS + 1))
    with MariaDB().connect(mariadb_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f') FROM ai_agent_chat_history")
        assert cur.fetchall() == (("2025-10-09 08:53:20.124000",),)


async def test_null_report_time_is_stored_as_server_now(client, manager):
    """A null reportTime becomes the server's current UTC time."""
    before = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    await post(client, manager, report(reportTime=None))
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    [row] = await manager.rows()
    assert before <= row["created_at"] <= after


async def test_duplicate_report_is_stored_twice(client, manager):
    """There is no unique key: the same report sent twice is two rows."""
    await post(client, manager, report())
    await post(client, manager, report())
    assert len(await manager.rows()) == 2


async def test_many_concurrent_reports_are_all_stored(client, manager):
    """Two hundred reports in flight at once are all answered true and all stored."""
    bodies = [report(content=f"m{i}", reportTime=T_MS + i) for i in range(200)]
    answers = await asyncio.gather(*(post(client, manager, body) for body in bodies))
    assert all(answer == (200, OK) for answer in answers)
    assert [row["content"] for row in await manager.rows()] == [f"m{i}" for i in range(200)]


# --- report: rejections ----------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "test-secret", "bearer test-secret"])
async def test_bad_secret_answers_http_200_with_code_401_and_stores_nothing(client, manager, authorization):
    """A missing or wrong secret is HTTP 200 with a code 401 envelope in Chinese."""
    headers = {} if authorization is None else {"Authorization": authorization}
    assert await post(client, manager, report(), headers=headers) == (
        200, {"code": 401, "msg": UNAUTHORIZED_MSG, "data": None})
    assert await manager.rows() == []


@pytest.mark.parametrize("field, value", [
    ("content", ""), ("content", "  \n"), ("content", None), ("macAddress", ""), ("sessionId", None),
    ("chatType", None),
])
async def test_blank_required_field_answers_10034_and_stores_nothing(client, manager, field, value):
    """A blank or missing required field is the validation code 10034."""
    status, answer = await post(client, manager, report(**{field: value}))
    assert (status, answer["code"], answer["data"]) == (200, 10034, None)
    assert field in answer["msg"]
    assert await manager.rows() == []


@pytest.mark.parametrize("mac", ["aa:bb:cc:dd:ee:ff", MAC.upper(), MAC + " ", MAC.replace(":", "-")])
async def test_unknown_mac_answers_data_false_and_stores_nothing(client, manager, mac):
    """A MAC not bound exactly (case, spaces and separators count) answers data false."""
    assert await post(client, manager, report(macAddress=mac)) == (
        200, {"code": 0, "msg": "success", "data": False})
    assert await manager.rows() == []
    assert manager.requests["unknown_mac"] == 1


async def test_unbound_device_answers_data_false(client, manager):
    """After unbind_device the MAC is unknown again."""
    await manager.unbind_device(MAC)
    status, answer = await post(client, manager, report())
    assert answer["data"] is False
    assert await manager.rows() == []


async def test_overlong_content_in_varchar_schema_answers_500_and_stores_nothing(client, manager):
    """Content over VARCHAR(1024) is a strict-mode error, answered as code 500 with the error."""
    status, answer = await post(client, manager, report(content="x" * 1025))
    assert (status, answer["code"]) == (200, 500)
    assert "Data too long" in answer["msg"]
    assert await manager.rows() == []


async def test_varchar_limit_counts_characters_not_bytes(client, manager):
    """Exactly 1024 four-byte emoji fit the VARCHAR(1024) utf8mb4 column."""
    assert await post(client, manager, report(content="😀" * 1024)) == (200, OK)
    assert (await manager.rows())[0]["content"] == "😀" * 1024


async def test_overlong_session_id_answers_500_and_stores_nothing(client, manager):
    """A sessionId over VARCHAR(50) is a code 500."""
    status, answer = await post(client, manager, report(sessionId="s" * 51))
    assert answer["code"] == 500
    assert await manager.rows() == []


async def test_text_schema_stores_long_content(client, mariadb_db):
    """With content_type "text" the column is TEXT and long content is stored whole."""
    async with ReferenceManager(mariadb_db, content_type="text") as manager:
        await manager.bind_device(MAC)
        assert await post(client, manager, report(content="长" * 5000)) == (200, OK)
        assert (await manager.rows())[0]["content"] == "长" * 5000


async def test_non_json_body_answers_500(client, manager):
    """An unreadable body is an unhandled exception: code 500."""
    async with client.post(manager.url + REPORT, data=b"{nope", headers=auth(manager)) as response:
        answer = await response.json(content_type=None)
    assert (response.status, answer["code"]) == (200, 500)


# --- chat_history_conf and audio ---------------------------------------------------------------

async def test_chat_history_off_answers_true_and_stores_nothing(client, manager):
    """An agent with chat_history_conf 0 accepts the report but stores nothing."""
    await manager.bind_device(MAC, "quiet", chat_history_conf=0)
    assert await post(client, manager, report()) == (200, OK)
    assert await manager.rows() == []
    assert manager.requests["not_stored"] == 1


async def test_conf_2_stores_audio_in_side_table(client, manager):
    """With chat_history_conf 2 the decoded audio goes to ai_agent_chat_audio under a 32-char id."""
    await manager.bind_device(MAC, "loud", chat_history_conf=2)
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256))
    await post(client, manager, report(audioBase64=base64.b64encode(wav).decode()))
    [row] = await manager.rows()
    assert (row["agent_id"], len(row["audio_id"])) == ("loud", 32)
    assert await manager.audio(row["audio_id"]) == wav


async def test_conf_1_stores_text_without_audio(client, manager):
    """With chat_history_conf 1 any audio is ignored."""
    await post(client, manager, report(audioBase64=base64.b64encode(b"RIFF").decode()))
    [row] = await manager.rows()
    assert row["audio_id"] is None


async def test_invalid_base64_audio_with_conf_2_answers_500_and_stores_nothing(client, manager):
    """Audio that is not base64 fails the whole report when audio is kept."""
    await manager.bind_device(MAC, chat_history_conf=2)
    status, answer = await post(client, manager, report(audioBase64="not base64!!"))
    assert answer["code"] == 500
    assert await manager.rows() == []


# --- session endpoint -------------------------------------------------------------------------

def session_body(*messages: tuple[int, str, int]) -> dict:
    listed = [{"chatType": t, "content": c, "timestamp": ts} for t, c, ts in messages]
    return {"macAddress": MAC, "sessionId": "sess", "agentId": "ignored", "messages": listed,
            "messageCount": len(listed), "sessionEnd": True}


async def test_session_endpoint_stores_one_row_per_message_with_second_timestamps(client, manager):
    """A whole session is stored row by row, timestamps read as seconds, agent taken from the MAC."""
    body = session_body((1, "早上好", 1_760_000_000), (2, "早上好呀！☀️", 1_760_000_001))
    assert await post(client, manager, body, path=SESSION) == (200, OK)
    rows = await manager.rows("sess")
    assert [(r["chat_type"], r["content"], r["agent_id"]) for r in rows] == [
        (1, "早上好", "agent1"), (2, "早上好呀！☀️", "agent1")]
    assert [r["created_at"] for r in rows] == [T_AT.replace(microsecond=0),
                                               T_AT.replace(second=21, microsecond=0)]


async def test_session_message_over_2000_chars_answers_10034_and_stores_nothing(client, manager):
    """A message longer than 2000 characters fails validation and the session is not stored."""
    body = session_body((1, "ok", 1_760_000_000), (2, "x" * 2001, 1_760_000_001))
    status, answer = await post(client, manager, body, path=SESSION)
    assert answer["code"] == 10034
    assert await manager.rows() == []


async def test_session_length_limit_counts_emoji_twice_like_java(client, mariadb_db):
    """1001 emoji are 2002 Java chars, over the limit even in the TEXT schema."""
    async with ReferenceManager(mariadb_db, content_type="text") as manager:
        await manager.bind_device(MAC)
        status, answer = await post(client, manager, session_body((1, "🙂" * 1001, 1)), path=SESSION)
        assert answer["code"] == 10034


async def test_session_is_stored_all_or_nothing(client, manager):
    """When one message fails in the database (over VARCHAR(1024)), no message of the session is stored."""
    body = session_body((1, "short", 1_760_000_000), (2, "y" * 1500, 1_760_000_001))
    status, answer = await post(client, manager, body, path=SESSION)
    assert answer["code"] == 500
    assert await manager.rows() == []


async def test_session_for_unknown_mac_answers_data_false(client, manager):
    """The session endpoint applies the same MAC rule as /report."""
    body = dict(session_body((1, "hi", 1)), macAddress="00:00:00:00:00:00")
    assert (await post(client, manager, body, path=SESSION))[1]["data"] is False
    assert await manager.rows() == []


# --- agent lookup and console -----------------------------------------------------------------

async def test_agent_id_lookup_returns_bound_agent_or_null(client, manager):
    """GET agent-id answers the bound agent's id, and null for an unbound MAC."""
    await manager.bind_device("aa:aa:aa:aa:aa:aa", "agent7")
    path = "/agent/device/{}/agent-id"
    assert (await get(client, manager, path.format("aa:aa:aa:aa:aa:aa"), auth(manager)))[1]["data"] == "agent7"
    assert await get(client, manager, path.format("bb:bb:bb:bb:bb:bb"), auth(manager)) == (
        200, {"code": 0, "msg": "success", "data": None})


async def test_agent_id_lookup_needs_the_secret(client, manager):
    """The agent lookup is a device-server call: no secret, code 401."""
    assert (await get(client, manager, f"/agent/device/{MAC}/agent-id"))[1]["code"] == 401


async def test_console_lists_sessions_and_chats_in_created_at_order(client, manager):
    """The console pages sessions newest first and lists a session's chats by created_at ascending."""
    await post(client, manager, report(sessionId="old", reportTime=T_MS - 60_000))
    await post(client, manager, report(content="second", chatType=2, reportTime=T_MS + 5))
    await post(client, manager, report(content="first", reportTime=T_MS))
    status, sessions = await get(client, manager, "/agent/agent1/sessions?page=1&limit=1")
    assert sessions["data"] == {"total": 2, "list": [
        {"sessionId": "s1", "createdAt": "2025-10-09 08:53:20.123", "chatCount": 2, "title": "first"}]}
    status, chats = await get(client, manager, "/agent/agent1/chat-history/s1")
    assert [(c["content"], c["chatType"], c["macAddress"]) for c in chats["data"]] == [
        ("first", 1, MAC), ("second", 2, MAC)]


# --- context path -----------------------------------------------------------------------------

async def test_context_path_is_part_of_the_url_and_can_change_live(client, manager):
    """The routes live under the context path; changing it moves them without a restart."""
    manager.context = "/toy"
    assert manager.url.endswith("/toy")
    assert await post(client, manager, report()) == (200, OK)
    async with client.post(manager.url.replace("/toy", "/xiaozhi") + REPORT, json=report(),
                           headers=auth(manager)) as response:
        assert response.status == 404
    assert len(await manager.rows()) == 1


# --- idempotency ------------------------------------------------------------------------------

async def test_idempotency_key_is_ignored_by_default(client, manager):
    """Like the stock Manager, the default server stores a resend with the same key twice."""
    for _ in range(2):
        await post(client, manager, report(), headers=auth(manager, **{"Idempotency-Key": "k1"}))
    assert len(await manager.rows()) == 2


async def test_honoured_idempotency_key_stores_once_and_replays_success(client, manager):
    """With honour_idempotency a resend answers the same success without a second row."""
    manager.honour_idempotency = True
    headers = auth(manager, **{"Idempotency-Key": "k1"})
    answers = [await post(client, manager, report(), headers=headers) for _ in range(3)]
    assert answers == [(200, OK)] * 3
    assert len(await manager.rows()) == 1
    assert manager.requests["replayed"] == 2


async def test_concurrent_requests_with_one_key_store_once(client, manager):
    """Ten simultaneous requests with the same key store exactly one row and all answer true."""
    manager.honour_idempotency = True
    headers = auth(manager, **{"Idempotency-Key": "same"})
    answers = await asyncio.gather(*(post(client, manager, report(), headers=headers) for _ in range(10)))
    assert answers == [(200, OK)] * 10
    assert len(await manager.rows()) == 1


async def test_failed_attempt_does_not_consume_its_idempotency_key(client, manager):
    """A key is stored only with a success, so the retry of a failed attempt is stored."""
    manager.honour_idempotency = True
    headers = auth(manager, **{"Idempotency-Key": "k2"})
    manager.fail_code500()
    assert (await post(client, manager, report(), headers=headers))[1]["code"] == 500
    assert (await post(client, manager, report(content="x" * 2000), headers=headers))[1]["code"] == 500
    assert await post(client, manager, report(), headers=headers) == (200, OK)
    assert len(await manager.rows()) == 1


async def test_idempotency_keys_survive_a_new_server_over_the_same_database(client, mariadb_db):
    """Keys live in MariaDB, so a restarted server still recognises them."""
    headers = {"Authorization": "Bearer test-secret", "Idempotency-Key": "k3"}
    for _ in range(2):
        async with ReferenceManager(mariadb_db, honour_idempotency=True) as manager:
            await manager.bind_device(MAC)
            assert await post(client, manager, report(), headers=headers) == (200, OK)
    async with ReferenceManager(mariadb_db) as manager:
        assert len(await manager.rows()) == 1


# --- faults -----------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [502, 503, 504])
async def test_fail_http_answers_real_http_errors_then_recovers(client, manager, status):
    """fail_http answers the next requests with a real HTTP error and stores nothing for them."""
    manager.fail_http(status, count=2)
    for _ in range(2):
        async with client.post(manager.url + REPORT, json=report(), headers=auth(manager)) as response:
            assert response.status == status
    assert await post(client, manager, report()) == (200, OK)
    assert len(await manager.rows()) == 1
    assert manager.requests["fault_http"] == 2


async def test_fail_code500_answers_http_200_code_500_and_stores_nothing(client, manager):
    """fail_code500 gives the unhandled-exception envelope over HTTP 200 and stores nothing."""
    manager.fail_code500(count=1)
    status, answer = await post(client, manager, report())
    assert (status, answer["code"], answer["data"]) == (200, 500, None)
    assert await manager.rows() == []
    assert await post(client, manager, report()) == (200, OK)


async def test_rate_limit_answers_429_with_retry_after(client, manager):
    """rate_limit answers HTTP 429 with Retry-After in whole seconds, rounded up."""
    manager.rate_limit(count=1, retry_after_seconds=1.5)
    async with client.post(manager.url + REPORT, json=report(), headers=auth(manager)) as response:
        assert (response.status, response.headers["Retry-After"]) == (429, "2")
    assert await manager.rows() == []
    assert await post(client, manager, report()) == (200, OK)


async def test_reset_after_commit_stores_the_row_but_the_client_gets_no_answer(client, manager):
    """reset_after_commit commits the row, then resets the connection: the ambiguous failure."""
    manager.reset_after_commit(count=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(client, manager, report())
    assert len(await manager.rows()) == 1
    assert manager.requests["reset"] == 1
    assert await post(client, manager, report()) == (200, OK)


@pytest.mark.parametrize("kind", ["non_json", "huge_json", "wrong_envelope"])
async def test_garbage_answers_http_200_without_an_envelope_and_stores_nothing(client, manager, kind):
    """garbage answers HTTP 200 whose body is not a Manager envelope, and stores nothing."""
    manager.garbage(count=1, kind=kind)
    async with client.post(manager.url + REPORT, json=report(), headers=auth(manager)) as response:
        status, body = response.status, await response.read()
    assert status == 200
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    assert not (isinstance(parsed, dict) and "code" in parsed)
    assert (len(body) >= HUGE_JSON_BYTES) == (kind == "huge_json")
    assert await manager.rows() == []


async def test_delay_slows_every_answer(client, manager):
    """delay_seconds holds each answer back by at least that long."""
    manager.delay_seconds = 0.3
    started = time.monotonic()
    assert await post(client, manager, report()) == (200, OK)
    assert time.monotonic() - started >= 0.3


async def test_client_timeout_during_delay_leaves_the_row_stored(client, manager):
    """The delay comes after the commit, so a client that times out has still been stored."""
    manager.delay_seconds = 5
    with pytest.raises(asyncio.TimeoutError):
        async with client.post(manager.url + REPORT, json=report(), headers=auth(manager),
                               timeout=aiohttp.ClientTimeout(total=1)) as response:
            await response.read()
    assert len(await manager.rows()) == 1


async def test_go_down_refuses_connections_and_come_up_serves_on_the_same_port(client, manager):
    """go_down stops listening entirely; come_up listens again on the same port."""
    port = manager.port
    await manager.go_down()
    assert not manager.is_up
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(client, manager, report())
    await manager.come_up()
    assert (manager.port, manager.is_up) == (port, True)
    assert await post(client, manager, report()) == (200, OK)
    assert len(await manager.rows()) == 1


async def test_unknown_report_time_unit_is_refused(manager):
    """Only "ms" and "s" are valid report time units."""
    with pytest.raises(ValueError):
        manager.report_time_unit = "us"


# --- running by hand --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_command_line_creates_the_database_prints_the_url_and_serves(client):
    """`python -m tests.reference_manager` creates its database, binds devices and prints its URL."""
    database, port = f"voicelog_cli_{uuid.uuid4().hex[:12]}", free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.reference_manager", "--port", str(port), "--context", "/toy",
        "--secret", "S", "--database", database, "--bind", f"{MAC}=agentX:1",
        cwd=REPO, stdout=asyncio.subprocess.PIPE)
    try:
        url = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
        assert url == f"http://127.0.0.1:{port}/toy"
        async with client.post(url + REPORT, json=report(), headers={"Authorization": "Bearer S"}) as response:
            assert await response.json() == OK
        with MariaDB().connect(database) as conn, conn.cursor() as cur:
            cur.execute("SELECT agent_id, content FROM ai_agent_chat_history")
            assert cur.fetchall() == (("agentX", "hi"),)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        drop_database(database)
