"""The daemon's /v1 routes: behind a bearer token, clear 4xx for bad input, erasure that reaches both stores."""

import json
from pathlib import Path

import aiohttp

from tests.kits.delivery import eventually
from tests.kits.ops import daemon_config, running_daemon, wait_until_serving
from tests.kits.redis import keys_and_values
from voicelog.agent.simulation.run import SimulatedDevice, simulate
from voicelog.services.config import load_settings

MAC, OTHER = "68:25:dd:ba:39:78", "68:25:dd:00:00:01"
TOKEN = "s3cr3t-console-token"
WORDS = "my secret hiding place is under the red slide"


async def call(daemon, method: str, path: str, token: str | None = TOKEN) -> tuple[int, dict]:
    """One request to the daemon; its status and JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.request(method, daemon.base_url + path, headers=headers) as answer):
        return answer.status, json.loads(await answer.text() or "{}")


async def box(tmp_path: Path, manager, redis_space, **http) -> tuple[Path, list[str]]:
    """A daemon config with two devices' sessions captured; the session ids."""
    config = daemon_config(tmp_path, manager, memory=redis_space.memory(), http=http)
    settings = load_settings(config, environ={})
    summary = await simulate(settings, [SimulatedDevice(MAC, ({"user": WORDS, "agent": "I won't tell"},)),
                                        SimulatedDevice(MAC, ({"user": "hello again", "agent": "hi!"},)),
                                        SimulatedDevice(OTHER, ({"user": "pizza day", "agent": "yum"},))],
                             time_scale=0.02, deliver=False)
    return config, [p["session_id"] for p in summary.per_session]


async def test_the_v1_routes_refuse_missing_or_wrong_tokens_and_answer_bad_input_with_4xx(
        tmp_path, reference_manager, redis_space):
    """No token or a wrong one is 401; bad MACs, ids, times and parameters are 400; unknown things 404;
    the log holds neither the token nor what was said."""
    config, sessions = await box(tmp_path, reference_manager, redis_space, api_token=TOKEN)
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)
        assert (await call(daemon, "GET", f"/v1/devices/{MAC}/memory", token=None))[0] == 401
        assert (await call(daemon, "GET", f"/v1/devices/{MAC}/memory", token="wrong"))[0] == 401
        assert (await call(daemon, "DELETE", f"/v1/sessions/{sessions[0]}", token="wrong"))[0] == 401
        status, body = await call(daemon, "GET", f"/v1/devices/{MAC.upper().replace(':', '-')}/memory")
        assert status == 200 and body["mac"] == MAC and body["store"] == "redis"
        assert [t["content"] for t in body["turns"]] == [WORDS, "I won't tell", "hello again", "hi!"]
        assert {"chat_type", "content", "interrupted"} <= set(body["turns"][0])
        for path, field in [("/v1/devices/not-a-mac/memory", "bad_mac"),
                            ("/v1/devices/68:25:dd:ba:39/memory", "bad_mac"),
                            (f"/v1/devices/{MAC}/memory?full=1", "bad_query"),
                            ("/v1/sessions?since=yesterday", "bad_since"),
                            ("/v1/sessions?mac=zz", "bad_mac"),
                            (f"/v1/sessions/{'x' * 51}", "bad_session_id")]:
            status, body = await call(daemon, "GET", path)
            assert (status, body["error"]) == (400, field), path
            assert body["message"]
        assert (await call(daemon, "GET", "/v1/sessions/no-such-session"))[0] == 404
        assert (await call(daemon, "DELETE", "/v1/sessions/no-such-session"))[0] == 404
        assert (await call(daemon, "GET", "/v1/nothing-here"))[0] == 404
        assert (await call(daemon, "POST", f"/v1/devices/{MAC}/memory"))[0] == 405
    logs = daemon.logs()
    assert TOKEN not in logs and WORDS not in logs and "hiding" not in logs


async def test_without_an_api_token_the_v1_routes_do_not_exist(tmp_path, reference_manager, redis_space):
    """With http.api_token empty every /v1 path answers 404, with or without a token."""
    config, sessions = await box(tmp_path, reference_manager, redis_space)
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)
        for method, path in [("GET", f"/v1/devices/{MAC}/memory"), ("DELETE", f"/v1/sessions/{sessions[0]}"),
                             ("GET", "/v1/sessions")]:
            async with (aiohttp.ClientSession() as session,
                        session.request(method, daemon.base_url + path,
                                        headers={"Authorization": f"Bearer {TOKEN}"}) as answer):
                assert answer.status == 404, path
        assert (await daemon.get("/healthz"))[0] == 200


async def test_sessions_can_be_listed_read_and_erased_and_memory_forgotten_over_http(
        tmp_path, reference_manager, redis_space):
    """Sessions list with counts, one session shows its turns with delivery status; DELETE of a session
    leaves nothing of it in Redis or the data directory; DELETE of a device's memory empties it."""
    await reference_manager.bind_device(MAC)
    config, sessions = await box(tmp_path, reference_manager, redis_space, api_token=TOKEN)
    first, second, other = sessions
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)

        async def delivered() -> bool:
            _, body = await call(daemon, "GET", f"/v1/sessions/{first}")
            return [t["status"] for t in body["turns"]] == ["delivered", "delivered"]

        await eventually(delivered, what="the session delivered")
        status, body = await call(daemon, "GET", f"/v1/sessions?mac={MAC}&since=2020-01-01")
        assert status == 200 and [s["session_id"] for s in body["sessions"]] == [first, second]
        assert body["sessions"][0]["turns"]["delivered"] == 2
        _, one = await call(daemon, "GET", f"/v1/sessions/{first}")
        assert [t["content"] for t in one["turns"]] == [WORDS, "I won't tell"]

        status, erased = await call(daemon, "DELETE", f"/v1/sessions/{first}")
        assert status == 200 and erased["erased"]["turns"] == 2 and erased["memory"]["redis"] == "erased"
        assert not any(WORDS.encode() in v for v in keys_and_values(redis_space.url, redis_space.prefix).values())
        data = tmp_path / "backups"
        assert [p for p in data.rglob("*") if p.is_file() and (first.encode() in p.read_bytes()
                                                               or WORDS.encode() in p.read_bytes())] == []
        assert (await call(daemon, "GET", f"/v1/sessions/{first}"))[0] == 404
        _, memory = await call(daemon, "GET", f"/v1/devices/{MAC}/memory")
        assert [t["content"] for t in memory["turns"]] == ["hello again", "hi!"]

        status, forgot = await call(daemon, "DELETE", f"/v1/devices/{MAC}/memory")
        assert status == 200 and forgot["stores"]["redis"] == "erased"
        assert (await call(daemon, "GET", f"/v1/devices/{MAC}/memory"))[1]["turns"] == []
        assert [t["content"] for t in (await call(daemon, "GET", f"/v1/devices/{OTHER}/memory"))[1]["turns"]] \
            == ["pizza day", "yum"]
