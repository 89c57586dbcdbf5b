"""How big each benchmark runs: the full run (~10 min on 2 cores) and the CI smoke run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """Load for every section; ``quick`` trades precision for a run of well under a minute."""

    name: str
    capture_turns: int  # per level and concurrency; p99.9 needs >= 1,000 samples to mean anything
    capture_turns_power: int  # an fsync per turn: fewer, or the run takes minutes
    capture_sessions: int
    delivery_sessions: int
    delivery_turns: int  # per session
    delivery_rounds: int  # variants run interleaved this many times; the median counts
    concurrency: int  # in-flight sessions for voicelog (max_concurrent_sessions) and baselines
    latency_sessions: int
    latency_seconds: float
    latency_gap: tuple[float, float]  # seconds between a session's turns (uniform)
    latency_send_interval: float
    backlog_sessions: int
    backlog_turns: int  # per session
    agent_time_scale: float
    agent_turns: int  # script turns per session (each makes a user and an agent row)
    agent_steps: tuple[int, ...]  # concurrent sessions tried, in order, until one is not sustained
    agent_stagger: float  # seconds over which a step's sessions start
    memory_devices: int = 1_000  # devices in the stores when preload is timed
    memory_days: int = 7  # days of sessions in the spool (Redis holds the last 24 h)
    memory_reads: int = 2_000  # timed preloads per store
    memory_cold_reads: int = 50  # first reads of a fresh Redis client
    memory_capture_turns: int = 1_500  # add_message calls per capture round
    memory_rounds: int = 8  # rounds per mode (writer off / on), alternating


FULL = Sizes(
    name="full", capture_turns=20_000, capture_turns_power=5_000, capture_sessions=200,
    delivery_sessions=200, delivery_turns=30, delivery_rounds=5, concurrency=8,
    latency_sessions=100, latency_seconds=30.0, latency_gap=(1.0, 3.0), latency_send_interval=1.0,
    backlog_sessions=1_000, backlog_turns=100,
    agent_time_scale=1.0, agent_turns=3, agent_steps=(1, 50, 100, 150, 200, 300, 400),
    agent_stagger=4.0,
)

QUICK = Sizes(
    name="quick", capture_turns=2_000, capture_turns_power=400, capture_sessions=200,
    delivery_sessions=40, delivery_turns=10, delivery_rounds=1, concurrency=8,
    latency_sessions=100, latency_seconds=4.0, latency_gap=(0.2, 0.6), latency_send_interval=0.5,
    backlog_sessions=40, backlog_turns=50,
    agent_time_scale=0.05, agent_turns=2, agent_steps=(1, 5, 10), agent_stagger=0.1,
    memory_days=1, memory_reads=300, memory_cold_reads=10, memory_capture_turns=500, memory_rounds=2,
)
