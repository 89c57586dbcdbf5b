"""/metrics summarises how long children waited for their toy, from what each captured turn measured."""

from __future__ import annotations

import io

from tests.kits.agents import MAC, SCRIPTED
from tests.kits.delivery import eventually
from tests.kits.ops import daemon_config, metric, running_daemon, wait_until_serving
from voicelog.agent.talk import talk
from voicelog.services.config import load_settings


async def test_response_latency_llm_and_tts_histograms_count_each_reply_once(tmp_path, reference_manager):
    """A talked session's replies show up once each in the response-latency, LLM TTFT and TTS TTFB histograms."""
    await reference_manager.bind_device(MAC)
    config = daemon_config(tmp_path, reference_manager, agent=SCRIPTED)
    settings = load_settings(config, environ={})
    async with running_daemon(config) as daemon:
        await wait_until_serving(daemon)
        before = (await daemon.get("/metrics"))[1]
        assert metric(before, "voicelog_response_latency_seconds_count") == 0
        err = io.StringIO()
        code = await talk(settings, MAC, "metrics-0001_6825ddba3978", source=["hello", "do fish sleep", "bye"],
                          out=io.StringIO(), err=err)
        assert code == 0, err.getvalue()

        async def observed() -> bool:
            text = (await daemon.get("/metrics"))[1]
            return metric(text, "voicelog_response_latency_seconds_count") == 3

        await eventually(observed, what="3 replies in the response-latency histogram")
        await eventually(lambda: _delivered(reference_manager, 6), what="6 rows delivered")
        text = (await daemon.get("/metrics"))[1]
    assert metric(text, "voicelog_response_latency_seconds_count") == 3  # scraped again: not counted twice
    assert 0 < metric(text, "voicelog_response_latency_seconds_sum") < 15
    assert metric(text, "voicelog_llm_ttft_seconds_count") == 3
    assert metric(text, "voicelog_tts_ttfb_seconds_count") == 3
    assert metric(text, "voicelog_end_of_turn_delay_seconds_count") == 3  # one per child turn


async def _delivered(manager, count: int) -> bool:
    return len(await manager.rows("metrics-0001_6825ddba3978")) == count
