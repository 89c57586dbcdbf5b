"""The Manager API client: envelope classification, content splitting, the wire shape, and a real Manager."""

import email.utils
import json
import re
import time
from datetime import datetime

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from voicelog.services.config import ManagerApiSettings, Secret
from voicelog.services.shipping.manager import (
    AGENT_ID_NEGATIVE_TTL,
    AGENT_ID_TTL,
    BODY_LIMIT,
    REASON_LIMIT,
    SECRET_CHECK_MAC,
    ManagerApiClient,
    MockTransport,
    Outcome,
    RawResponse,
    Report,
    SessionMessage,
    SessionUpload,
    TransportError,
    classify,
    envelope,
    parse_retry_after,
    split_content,
)

SECRET = "s3cr3t-Zq9"
URL = "http://manager.test:8002/xiaozhi"
MAC = "68:25:dd:ba:39:78"
CONTENT = "我想听恐龙的故事 🦕"
T_MS = 1_760_000_000_123
T_AT = datetime(2025, 10, 9, 8, 53, 20, 123000)  # T_MS as the naive UTC created_at


# --- helpers ---------------------------------------------------------------------------------

answer = envelope


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def api_settings(**overrides) -> ManagerApiSettings:
    values = {"url": URL, "secret": Secret(SECRET), "timeout": 5.0, **overrides}
    return ManagerApiSettings(**values)


def make_client(*answers, clock=None, **overrides) -> tuple[ManagerApiClient, MockTransport]:
    transport = MockTransport(list(answers) or [answer()])
    client = ManagerApiClient(api_settings(**overrides), transport, clock=clock or FakeClock())
    return client, transport


def a_report(content: str = CONTENT, key: str = "room_1#3", mac: str = MAC) -> Report:
    return Report(mac, "room_1", 1, content, T_MS, key)


def an_upload(mac: str = MAC, session_id: str = "room_1") -> SessionUpload:
    messages = (SessionMessage(1, "你好", 1_760_000_000), SessionMessage(2, "Hello! 👋", 1_760_000_001))
    return SessionUpload(mac, session_id, "agent1", messages, True, f"{session_id}#1-2")


def envelope_body(code: object, data: object = None, msg: str = "m") -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": data}).encode()


# --- classify ------------------------------------------------------------------------------

HTML_PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
CLASSIFY_TABLE = [
    # (id, http status, headers, body, endpoint, outcome, code)
    ("report-code0-true", 200, {}, envelope_body(0, True), "report", Outcome.DELIVERED, 0),
    ("report-code0-false", 200, {}, envelope_body(0, False), "report", Outcome.UNROUTABLE, 0),
    ("report-code0-null", 200, {}, envelope_body(0, None), "report", Outcome.RETRYABLE, None),
    ("report-code0-string", 200, {}, envelope_body(0, "true"), "report", Outcome.RETRYABLE, None),
    ("report-code0-one", 200, {}, envelope_body(0, 1), "report", Outcome.RETRYABLE, None),
    ("code401", 200, {}, envelope_body(401, msg="服务器密钥无效"), "report", Outcome.UNAUTHORIZED, 401),
    ("code10034", 200, {}, envelope_body(10034, msg="content不能为空"), "report", Outcome.REJECTED, 10034),
    ("code10001", 200, {}, envelope_body(10001), "report", Outcome.REJECTED, 10001),
    ("code400", 200, {}, envelope_body(400), "report", Outcome.REJECTED, 400),
    ("code500", 200, {}, envelope_body(500, msg="服务器内部异常"), "report", Outcome.RETRYABLE, 500),
    ("code503", 200, {}, envelope_body(503), "report", Outcome.RETRYABLE, 503),
    ("session-code0-true", 200, {}, envelope_body(0, True), "session", Outcome.DELIVERED, 0),
    ("session-code0-null", 200, {}, envelope_body(0, None), "session", Outcome.DELIVERED, 0),
    ("session-code0-object", 200, {}, envelope_body(0, {"saved": 2}), "session", Outcome.DELIVERED, 0),
    ("session-code0-false", 200, {}, envelope_body(0, False), "session", Outcome.UNROUTABLE, 0),
    ("session-code10034", 200, {}, envelope_body(10034), "session", Outcome.REJECTED, 10034),
    ("session-code401", 200, {}, envelope_body(401), "session", Outcome.UNAUTHORIZED, 401),
    ("http408", 408, {}, b"timeout", "report", Outcome.RETRYABLE, None),
    ("http429", 429, {"Retry-After": "7"}, b"slow down", "report", Outcome.RETRYABLE, None),
    ("http500", 500, {}, HTML_PAGE, "report", Outcome.RETRYABLE, None),
    ("http502", 502, {}, HTML_PAGE, "report", Outcome.RETRYABLE, None),
    ("http503", 503, {}, HTML_PAGE, "session", Outcome.RETRYABLE, None),
    ("http504", 504, {}, HTML_PAGE, "report", Outcome.RETRYABLE, None),
    ("http400", 400, {}, b'{"error":"Bad Request"}', "report", Outcome.REJECTED, None),
    ("http404", 404, {}, b'{"status":404,"error":"Not Found"}', "report", Outcome.MISCONFIGURED, None),
    ("http405", 405, {}, b"", "report", Outcome.MISCONFIGURED, None),
    ("http413", 413, {}, b"too large", "report", Outcome.REJECTED, None),
    ("http401", 401, {}, b"auth required", "report", Outcome.UNAUTHORIZED, None),
    ("http302", 302, {"Location": "https://x/"}, b"", "report", Outcome.MISCONFIGURED, None),
]
MALFORMED_BODIES = [
    ("html", b"<html><body>OK</body></html>"),
    ("empty", b""),
    ("json-list", b"[1, 2, 3]"),
    ("json-string", b'"ok"'),
    ("no-code", b'{"status": "ok", "result": true}'),
    ("string-code", b'{"code": "0", "data": true}'),
    ("bool-code", b'{"code": false, "data": true}'),
    ("float-code", b'{"code": 0.0, "data": true}'),
    ("invalid-utf8", b'{"code": 0, "msg": "\xff\xfe", "data": true}'),
    ("deep-nesting", b"[" * 60_000),
    ("huge", b'{"code": 0, "data": true, "pad": "' + b"x" * BODY_LIMIT + b'"}'),
]


@pytest.mark.parametrize(("status", "headers", "body", "endpoint", "outcome", "code"),
                         [row[1:] for row in CLASSIFY_TABLE], ids=[row[0] for row in CLASSIFY_TABLE])
def test_classify_follows_the_contract_table(status, headers, body, endpoint, outcome, code):
    """Each kind of answer maps to the outcome the contract and the issue ask for."""
    result = classify(status, headers, body, endpoint=endpoint)
    assert (result.outcome, result.code, result.http_status) == (outcome, code, status)


@pytest.mark.parametrize("body", [body for _, body in MALFORMED_BODIES],
                         ids=[name for name, _ in MALFORMED_BODIES])
@pytest.mark.parametrize("endpoint", ["report", "session"])
def test_garbage_200_is_retryable_as_malformed_response(body, endpoint):
    """A 200 that is not a usable envelope is retried, never delivered nor dead-lettered."""
    result = classify(200, {}, body, endpoint=endpoint)
    assert result.outcome is Outcome.RETRYABLE
    assert result.reason.startswith("malformed response")


def test_rejection_reason_carries_the_managers_message():
    """A validation rejection keeps the Manager's msg so support staff can read why."""
    result = classify(200, {}, envelope_body(10034, msg="content不能为空"), endpoint="report")
    assert "content不能为空" in result.reason and "10034" in result.reason


def test_http_4xx_reason_names_status_and_a_body_snippet():
    """Another HTTP 4xx holds delivery with its status and the start of its body in the reason."""
    result = classify(404, {}, b'{"status":404,"error":"Not Found","path":"/toy/x"}', endpoint="report")
    assert "HTTP 404" in result.reason and "Not Found" in result.reason


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308, 403, 404, 405, 406, 410, 415, 421])
def test_answers_that_are_not_a_verdict_on_the_turn_never_dead_letter_it(status):
    """Redirects, 404/405 and proxy refusals say the endpoint is wrong or away: hold, never dead-letter."""
    result = classify(status, {"Location": "/login"}, b"<html>login</html>", endpoint="report")
    assert result.outcome is Outcome.MISCONFIGURED
    assert ("redirected to /login" in result.reason) == (300 <= status < 400)


def test_reason_of_a_huge_error_page_is_capped():
    """A huge error body cannot blow up the reason stored with a dead letter."""
    result = classify(400, {}, b"x" * BODY_LIMIT, endpoint="report")
    assert len(result.reason) <= REASON_LIMIT + 3


def test_429_carries_retry_after_in_seconds():
    """Retry-After given in seconds is passed on for the shipper's backoff."""
    result = classify(429, {"retry-after": "7"}, b"", endpoint="report")
    assert result.retry_after == 7.0


def test_503_with_http_date_retry_after_gives_seconds_from_now():
    """Retry-After given as an HTTP-date becomes a delay relative to now."""
    date = email.utils.formatdate(time.time() + 120, usegmt=True)
    result = classify(503, {"Retry-After": date}, b"", endpoint="report")
    assert 100 <= result.retry_after <= 121


@pytest.mark.parametrize(("value", "expected"), [
    ("0", 0.0), (" 12 ", 12.0), ("1.5", 1.5), ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
    ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0), ("soon", None), ("-5", None), ("inf", None),
    ("nan", None), ("", None), (None, None),
])
def test_parse_retry_after_reads_seconds_and_http_dates(value, expected):
    """Delay-seconds and HTTP-dates are read; past dates mean now; anything else means unknown."""
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:27:00 GMT").timestamp()
    assert parse_retry_after(value, now=now) == expected


def test_classify_refuses_an_unknown_endpoint():
    """Asking for an endpoint the contract does not have is a programming error."""
    with pytest.raises(ValueError):
        classify(200, {}, envelope_body(0, True), endpoint="agent")


# --- split_content -------------------------------------------------------------------------

def test_content_of_exactly_max_chars_is_one_part():
    """Text that just fits is not split."""
    assert split_content("a" * 10, 10) == ["a" * 10]


def test_empty_content_has_no_parts():
    """Nothing to say gives nothing to send."""
    assert split_content("", 10) == []


def test_split_prefers_a_sentence_end_near_the_limit():
    """A long text breaks after a sentence, keeping the space with the first part."""
    assert split_content("Hello there. How are you today", 20) == ["Hello there. ", "How are you today"]


def test_split_prefers_a_cjk_sentence_end():
    """CJK full stops count as sentence ends even without a following space."""
    assert split_content("你好吗。我很好谢谢你呢", 8) == ["你好吗。", "我很好谢谢你呢"]


def test_split_falls_back_to_whitespace():
    """Without a sentence end, the break goes after the last space near the limit."""
    assert split_content("aaaa bbbb cccc dddd", 12) == ["aaaa bbbb ", "cccc dddd"]


def test_split_cuts_hard_when_there_is_no_space():
    """A text without breaks is cut at the limit."""
    assert split_content("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]


def test_split_never_separates_a_combining_mark_from_its_base():
    """An accent stays with its letter even when the limit falls between them."""
    assert split_content("x" * 9 + "e\u0301yyyy", 10) == ["x" * 9, "e\u0301yyyy"]


def test_split_never_separates_a_surrogate_pair():
    """A UTF-16 surrogate pair is moved whole into the next part."""
    assert split_content("x" * 9 + "\ud83d\ude00y", 10) == ["x" * 9, "\ud83d\ude00y"]


def test_split_keeps_flags_whole():
    """Regional indicator pairs (flags) are cut between flags, never inside one."""
    assert split_content("🇩🇪🇫🇷🇮🇹", 3) == ["🇩🇪", "🇫🇷", "🇮🇹"]


def test_split_of_a_cluster_longer_than_the_limit_still_respects_the_limit():
    """A combining sequence longer than a part is cut, since no part may exceed the column."""
    parts = split_content("e" + "\u0301" * 20, 5)
    assert "".join(parts) == "e" + "\u0301" * 20 and max(map(len, parts)) <= 5


def test_split_refuses_a_limit_below_one():
    """A zero limit can never make progress."""
    with pytest.raises(ValueError):
        split_content("abc", 0)


# Clusters a naive cut would break: combining marks, surrogate pairs, ZWJ sequences, skin tones, flags.
ATOMS = ["a", "Z", " ", ".", "\n", "中", "。", "e\u0301", "e\u0301\u0302", "\ud83d\ude00",
         "👍🏽", "👨\u200d👩\u200d👧", "🇩🇪", "é", "ก\u0e31"]


@st.composite
def clustered_text(draw):
    """Text built from whole clusters, with the offsets between clusters."""
    atoms = draw(st.lists(st.sampled_from(ATOMS), max_size=120))
    bounds, offset = {0}, 0
    for atom in atoms:
        offset += len(atom)
        bounds.add(offset)
    return "".join(atoms), bounds


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=1, max_value=60))
def test_split_parts_join_back_exactly_and_fit(content, max_chars):
    """For any text, the parts are non-empty, fit the limit and join back to the text."""
    parts = split_content(content, max_chars)
    assert "".join(parts) == content
    assert all(1 <= len(part) <= max_chars for part in parts)
    assert (len(parts) == 1) == (0 < len(content) <= max_chars)


@hypothesis_settings(max_examples=300, deadline=None)
@given(clustered_text(), st.integers(min_value=5, max_value=40))
def test_split_cuts_only_between_clusters(text_and_bounds, max_chars):
    """When every cluster fits the limit, every cut falls between clusters."""
    content, bounds = text_and_bounds
    parts = split_content(content, max_chars)
    cuts, offset = [], 0
    for part in parts[:-1]:
        offset += len(part)
        cuts.append(offset)
    assert "".join(parts) == content
    assert set(cuts) <= bounds


# --- the client over a fake transport ------------------------------------------------------

async def test_report_posts_the_contract_fields_with_auth_and_idempotency_headers():
    """A report is one POST to /agent/chat-history/report with the contract's exact body."""
    client, transport = make_client()
    result = await client.report(a_report())
    sent = transport.sent[0]
    assert result.outcome is Outcome.DELIVERED
    assert (sent.method, sent.url) == ("POST", URL + "/agent/chat-history/report")
    assert sent.headers == {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json",
                            "Idempotency-Key": "room_1#3"}
    assert sent.json_body == {"macAddress": MAC, "sessionId": "room_1", "chatType": 1,
                              "content": CONTENT, "audioBase64": None, "reportTime": T_MS}


async def test_report_time_is_sent_as_given_and_null_stays_null():
    """The client sends reportTime unchanged; the caller owns the unit."""
    client, transport = make_client()
    await client.report(Report(MAC, "s", 2, "hi", None, "s#1"))
    assert transport.sent[0].json_body["reportTime"] is None


async def test_idempotency_header_is_left_out_when_disabled():
    """send_idempotency_key false sends no Idempotency-Key header."""
    client, transport = make_client(send_idempotency_key=False)
    await client.report(a_report())
    assert "Idempotency-Key" not in transport.sent[0].headers


async def test_non_ascii_idempotency_key_is_percent_encoded_stably():
    """A key from a non-ASCII room name is still a valid header, the same on every retry."""
    client, transport = make_client()
    await client.report(a_report(key="客厅#1"))
    await client.report(a_report(key="客厅#1"))
    keys = [sent.headers["Idempotency-Key"] for sent in transport.sent]
    assert keys[0] == keys[1] == "%E5%AE%A2%E5%8E%85#1"


async def test_session_upload_posts_messages_with_count_and_end_flag():
    """A session upload carries every message in order, its count and the end flag."""
    client, transport = make_client()
    result = await client.upload_session(an_upload())
    sent = transport.sent[0]
    assert result.outcome is Outcome.DELIVERED
    assert sent.url == URL + "/agent/chat-history/session"
    assert sent.headers["Idempotency-Key"] == "room_1#1-2"
    assert sent.json_body == {
        "macAddress": MAC, "sessionId": "room_1", "agentId": "agent1",
        "messages": [{"chatType": 1, "content": "你好", "timestamp": 1_760_000_000},
                     {"chatType": 2, "content": "Hello! 👋", "timestamp": 1_760_000_001}],
        "messageCount": 2, "sessionEnd": True,
    }


async def test_session_upload_for_unbound_mac_is_unroutable():
    """data false from the session endpoint means nothing was stored."""
    client, _ = make_client(answer(data=False))
    assert (await client.upload_session(an_upload())).outcome is Outcome.UNROUTABLE


async def test_http_200_with_code_401_is_unauthorized_not_delivered():
    """The earlier clients' bug: a 200 carrying code 401 must not count as delivered."""
    client, _ = make_client(answer(401, "服务器密钥无效，拒绝访问", None))
    assert (await client.report(a_report())).outcome is Outcome.UNAUTHORIZED


async def test_transport_error_becomes_a_retryable_result():
    """Network trouble never raises out of report(); it comes back RETRYABLE with its cause."""
    client, _ = make_client(TransportError("ClientConnectorError: connection refused"))
    result = await client.report(a_report())
    assert result.outcome is Outcome.RETRYABLE
    assert "ClientConnectorError" in result.reason and result.http_status is None


async def test_reasons_never_contain_the_secret_even_when_echoed():
    """An answer or error that echoes the secret is redacted before it reaches a reason."""
    echoes = [answer(10034, f"bad header Bearer {SECRET}", None),
              RawResponse(400, {}, f"Authorization: Bearer {SECRET}".encode()),
              TransportError(f"cannot send Bearer {SECRET}")]
    client, _ = make_client(*echoes)
    reasons = [(await client.report(a_report())).reason for _ in echoes]
    assert all(SECRET not in reason and "***" in reason for reason in reasons)


async def test_logs_carry_neither_the_secret_nor_the_content():
    """Every log line of a request, delivered or not, is free of the secret and the text."""
    client, _ = make_client(answer(), answer(10034, f"echo {SECRET}", None),
                            TransportError(f"echo {SECRET}"))
    with capture_logs() as logs:
        for _ in range(3):
            await client.report(a_report())
    assert len(logs) >= 3
    assert SECRET not in repr(logs) and CONTENT not in repr(logs)


async def test_each_request_is_logged_at_debug_and_failures_at_warning():
    """A delivered request logs at DEBUG only; a rejected one adds a WARNING with its reason."""
    client, _ = make_client(answer(), answer(10034, "content不能为空", None))
    with capture_logs() as logs:
        await client.report(a_report())
        await client.report(a_report())
    levels = [entry["log_level"] for entry in logs]
    assert levels == ["debug", "debug", "warning"]
    assert logs[2]["outcome"] == "rejected" and "content不能为空" in logs[2]["reason"]


async def test_check_secret_counts_a_blank_field_rejection_as_accepted():
    """Code 10034 proves auth passed (auth runs before validation), so the secret is good."""
    client, transport = make_client(answer(10034, "content不能为空", None))
    result = await client.check_secret()
    body = transport.sent[0].json_body
    assert (result.outcome, result.reason) == (Outcome.DELIVERED, "secret accepted")
    assert body["content"] == "" and body["macAddress"] == SECRET_CHECK_MAC
    assert "Idempotency-Key" not in transport.sent[0].headers


@pytest.mark.parametrize(("reply", "outcome"), [
    (answer(401, "服务器密钥无效", None), Outcome.UNAUTHORIZED),
    (TransportError("ClientConnectorError: refused"), Outcome.RETRYABLE),
    (answer(500, "boom", None), Outcome.RETRYABLE),
    (answer(data=False), Outcome.DELIVERED),
    (RawResponse(404, {}, b"Not Found"), Outcome.MISCONFIGURED),
])
async def test_check_secret_tells_a_refused_secret_from_an_unreachable_manager(reply, outcome):
    """401 means a bad secret; network and server trouble mean "cannot tell yet"."""
    client, _ = make_client(reply)
    assert (await client.check_secret()).outcome is outcome


async def test_agent_id_is_fetched_once_and_cached():
    """A found agent id is remembered, so the second lookup sends nothing."""
    client, transport = make_client(answer(data="agent7"))
    assert [await client.agent_id(MAC), await client.agent_id(MAC)] == ["agent7", "agent7"]
    sent = transport.sent
    assert len(sent) == 1
    assert (sent[0].method, sent[0].url) == ("GET", URL + f"/agent/device/{MAC}/agent-id")
    assert sent[0].headers == {"Authorization": f"Bearer {SECRET}"}


async def test_found_agent_id_is_asked_again_after_its_ttl():
    """A device can be moved to another agent, so a found id expires after a long while."""
    clock = FakeClock()
    client, transport = make_client(answer(data="agent7"), answer(data="agent8"), clock=clock)
    await client.agent_id(MAC)
    clock.now += AGENT_ID_TTL + 1
    assert await client.agent_id(MAC) == "agent8" and len(transport.sent) == 2


async def test_unbound_mac_is_cached_only_briefly():
    """"Not bound" is remembered for a short time, then the Manager is asked again."""
    clock = FakeClock()
    client, transport = make_client(answer(data=None), answer(data="agent7"), clock=clock)
    first, again = await client.agent_id(MAC), await client.agent_id(MAC)
    clock.now += AGENT_ID_NEGATIVE_TTL + 1
    later = await client.agent_id(MAC)
    assert (first, again, later, len(transport.sent)) == (None, None, "agent7", 2)


@pytest.mark.parametrize("reply", [
    TransportError("ServerDisconnectedError"), RuntimeError("a bug in a transport"),
    answer(401, "no", None), RawResponse(404, {}, b"Not Found"), RawResponse(200, {}, b"<html>"),
], ids=["transport", "unexpected", "code401", "http404", "garbage"])
async def test_agent_id_returns_none_on_any_failure_without_caching_it(reply):
    """A failed lookup never raises and is not remembered, so the next call asks again."""
    client, transport = make_client(reply)
    assert [await client.agent_id(MAC), await client.agent_id(MAC)] == [None, None]
    assert len(transport.sent) == 2


async def test_aclose_closes_the_transport():
    """Closing the client releases the transport's connections."""
    client, transport = make_client()
    await client.aclose()
    assert transport.closed


# --- integration: the reference Manager over MariaDB ---------------------------------------

@pytest_asyncio.fixture
async def manager(reference_manager):
    """A running reference Manager with MAC bound to agent1."""
    await reference_manager.bind_device(MAC, "agent1")
    return reference_manager


def real_client(manager, *, secret: str | None = None, timeout: float = 5.0) -> ManagerApiClient:
    """A client with the real aiohttp transport, pointed at the reference Manager."""
    return ManagerApiClient(ManagerApiSettings(
        url=manager.url, secret=Secret(manager.secret if secret is None else secret), timeout=timeout))


@pytest_asyncio.fixture
async def client(manager):
    """A real client for the reference Manager, closed after the test."""
    client = real_client(manager)
    yield client
    await client.aclose()


async def test_delivered_report_lands_in_mariadb_with_exact_content(client, manager):
    """A DELIVERED report is one row with the exact text, type, session and millisecond time."""
    result = await client.report(a_report())
    rows = await manager.rows("room_1")
    assert result.outcome is Outcome.DELIVERED
    assert [(r["mac_address"], r["agent_id"], r["chat_type"], r["content"]) for r in rows] == \
        [(MAC, "agent1", 1, CONTENT)]
    assert rows[0]["created_at"] == T_AT


async def test_report_for_unknown_mac_is_unroutable_and_stores_nothing(client, manager):
    """data false for an unbound MAC is UNROUTABLE, not delivered."""
    result = await client.report(a_report(mac="aa:bb:cc:dd:ee:ff"))
    assert result.outcome is Outcome.UNROUTABLE and await manager.rows() == []


async def test_wrong_secret_is_unauthorized_and_the_secret_is_not_in_the_reason(manager):
    """The Manager's HTTP-200 code 401 becomes UNAUTHORIZED."""
    client = real_client(manager, secret="wrong-secret-123")
    try:
        result = await client.report(a_report())
    finally:
        await client.aclose()
    assert (result.outcome, result.code) == (Outcome.UNAUTHORIZED, 401)
    assert "wrong-secret-123" not in result.reason and await manager.rows() == []


async def test_blank_content_is_rejected_with_code_10034(client, manager):
    """A blank message fails validation: REJECTED, with the Manager's msg."""
    result = await client.report(a_report(content="   "))
    assert (result.outcome, result.code) == (Outcome.REJECTED, 10034)
    assert "content" in result.reason


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_proxy_http_errors_are_retryable_and_the_next_attempt_delivers(client, manager, status):
    """A gateway error page is RETRYABLE; the same client delivers once it clears."""
    manager.fail_http(status)
    first = await client.report(a_report())
    second = await client.report(a_report())
    assert (first.outcome, first.http_status) == (Outcome.RETRYABLE, status)
    assert second.outcome is Outcome.DELIVERED and len(await manager.rows()) == 1


async def test_rate_limit_is_retryable_with_retry_after(client, manager):
    """HTTP 429 is RETRYABLE and carries the Retry-After seconds."""
    manager.rate_limit(retry_after_seconds=7)
    result = await client.report(a_report())
    assert (result.outcome, result.http_status, result.retry_after) == (Outcome.RETRYABLE, 429, 7.0)


async def test_code_500_envelope_is_retryable(client, manager):
    """HTTP 200 with code 500 is a server failure to retry, not a delivery."""
    manager.fail_code500()
    result = await client.report(a_report())
    assert (result.outcome, result.code) == (Outcome.RETRYABLE, 500) and await manager.rows() == []


@pytest.mark.parametrize("kind", ["non_json", "huge_json", "wrong_envelope"])
async def test_garbage_answers_are_retryable_and_the_client_recovers(client, manager, kind):
    """Garbage (even 16 MiB of it) is a malformed RETRYABLE answer; the next request delivers."""
    manager.garbage(kind=kind)
    first = await client.report(a_report())
    second = await client.report(a_report())
    assert first.outcome is Outcome.RETRYABLE and first.reason.startswith("malformed response")
    assert second.outcome is Outcome.DELIVERED


async def test_manager_down_is_retryable_and_delivery_resumes_when_it_is_back(client, manager):
    """Connection refused is RETRYABLE with the error class named; a restart is picked up."""
    await client.report(a_report())
    await manager.go_down()
    down = await client.report(a_report())
    await manager.come_up()
    back = await client.report(a_report())
    # Refused, or a write on the pooled connection the shutdown closed: either way the class is named.
    assert down.outcome is Outcome.RETRYABLE and re.match(r"transport error: \w+Error", down.reason)
    assert back.outcome is Outcome.DELIVERED and len(await manager.rows()) == 2


async def test_reset_after_commit_is_retryable_though_the_row_was_stored(client, manager):
    """A reset after commit is ambiguous: RETRYABLE, and the row is already there."""
    manager.reset_after_commit()
    result = await client.report(a_report())
    assert result.outcome is Outcome.RETRYABLE and len(await manager.rows()) == 1


async def test_a_manager_slower_than_the_timeout_is_retryable(manager):
    """A request that outlives the configured timeout becomes a RETRYABLE timeout."""
    manager.delay_seconds = 1.0
    client = real_client(manager, timeout=0.2)
    try:
        result = await client.report(a_report())
    finally:
        await client.aclose()
    assert result.outcome is Outcome.RETRYABLE and "TimeoutError" in result.reason


async def test_honoured_idempotency_key_stores_a_resent_report_once(client, manager):
    """The key is sent, so a Manager that honours it stores a retry only once."""
    manager.honour_idempotency = True
    results = [await client.report(a_report()), await client.report(a_report())]
    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 2
    assert len(await manager.rows()) == 1


async def test_session_upload_stores_every_message(client, manager):
    """A whole-session upload is DELIVERED and stored one row per message, in order."""
    result = await client.upload_session(an_upload())
    rows = await manager.rows("room_1")
    assert result.outcome is Outcome.DELIVERED
    assert [(r["chat_type"], r["content"]) for r in rows] == [(1, "你好"), (2, "Hello! 👋")]


async def test_session_upload_for_unknown_mac_is_unroutable(client, manager):
    """The session endpoint's data false is UNROUTABLE too."""
    result = await client.upload_session(an_upload(mac="aa:bb:cc:dd:ee:ff"))
    assert result.outcome is Outcome.UNROUTABLE and await manager.rows() == []


async def test_check_secret_tells_a_good_secret_from_a_bad_one(manager):
    """The blank-report probe says DELIVERED for the right secret, UNAUTHORIZED for a wrong one."""
    good, bad = real_client(manager), real_client(manager, secret="not-the-secret")
    try:
        results = [await good.check_secret(), await bad.check_secret()]
    finally:
        await good.aclose()
        await bad.aclose()
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.UNAUTHORIZED]
    assert await manager.rows() == []


async def test_check_secret_against_a_manager_that_is_down_is_retryable(client, manager):
    """No answer means the secret cannot be judged yet."""
    await manager.go_down()
    assert (await client.check_secret()).outcome is Outcome.RETRYABLE


async def test_agent_id_lookup_finds_bound_devices_only(client, manager):
    """The lookup returns the bound agent's id and None for an unknown MAC."""
    found = await client.agent_id(MAC)
    missing = await client.agent_id("aa:bb:cc:dd:ee:ff")
    assert (found, missing) == ("agent1", None)


async def test_agent_id_lookup_with_a_wrong_secret_is_none(manager):
    """A refused lookup is simply no answer, never an exception."""
    client = real_client(manager, secret="not-the-secret")
    try:
        assert await client.agent_id(MAC) is None
    finally:
        await client.aclose()
