"""One PNG of a run: delivery throughput, backlog drain with memory, capture stall, agent scale.

matplotlib is only in the ``bench`` extra; without it the run still writes JSON and tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.report import CAPTURE_P99_9_US, CAPTURE_P99_US

COLOURS = {"ceiling": "#7f7f7f", "voicelog": "#1f77b4", "naive": "#d62728",
           "ceiling_session": "#bcbcbc", "voicelog_session": "#17becf"}


def available() -> bool:
    """Whether matplotlib can be imported here."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _throughput(ax: Any, delivery: dict[str, Any]) -> None:
    variants = {**delivery["report"]["variants"], **delivery["session"]["variants"]}
    names = list(variants)
    rates = [variants[n]["turns_per_s"] for n in names]
    bars = ax.bar(range(len(names)), rates, color=[COLOURS[n] for n in names])
    ax.bar_label(bars, labels=[f"{r:,.0f}" for r in rates], fontsize=8)
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylabel("turns/s")
    report = delivery["report"]
    ax.set_title(f"Delivery (report: voicelog/ceiling {report['voicelog_vs_ceiling']}, "
                 f"/naive {report['voicelog_vs_naive']})", fontsize=9)


def _drain(ax: Any, backlog: dict[str, Any]) -> None:
    for name in ("ceiling", "voicelog"):
        series = [(t, rows) for t, rows, _ in backlog[name]["series"] if rows > 0]
        if series:
            start = series[0][0]
            ax.plot([t - start for t, _ in series], [rows for _, rows in series], color=COLOURS[name],
                    label=f"{name} ({backlog[name]['turns_per_s']:,.0f}/s)")
    ax.set_xlabel("seconds since first row")
    ax.set_ylabel("rows in MariaDB")
    ax.set_title(f"Backlog drain, {backlog['turns']:,} turns (voicelog/ceiling {backlog['voicelog_vs_ceiling']})",
                 fontsize=9)
    memory = ax.twinx()
    series = [(t, rss) for t, rows, rss in backlog["voicelog"]["series"] if rows > 0 and rss > 0]
    if series:
        start = series[0][0]
        memory.plot([t - start for t, _ in series], [rss for _, rss in series], color=COLOURS["voicelog"],
                    linestyle=":", label="voicelog RSS")
    memory.set_ylabel("voicelog RSS (MB), dotted")
    memory.set_ylim(0, max([rss for _, rss in series], default=1) * 1.6)
    ax.legend(loc="lower right", fontsize=8)


def _capture(ax: Any, capture: dict[str, Any]) -> None:
    labels, p50, p99, p999 = [], [], [], []
    for row in capture["rows"]:
        labels.append(f"{row['level']}\n{row['sessions']}s")
        p50.append(row["p50"])
        p99.append(row["p99"])
        p999.append(row["p99_9"])
    positions = range(len(labels))
    for offset, values, name in ((-0.25, p50, "p50"), (0, p99, "p99"), (0.25, p999, "p99.9")):
        ax.bar([p + offset for p in positions], values, width=0.25, label=name)
    # Issue 16's targets, for durability: process (the middle pair of bars in each group).
    ax.axhline(CAPTURE_P99_US, color="black", linewidth=0.8, linestyle="--",
               label=f"target p99 {CAPTURE_P99_US} us (process)")
    ax.axhline(CAPTURE_P99_9_US, color="black", linewidth=0.8, linestyle=":",
               label=f"target p99.9 {CAPTURE_P99_9_US:,} us (process)")
    ax.set_yscale("log")
    ax.set_xticks(list(positions), labels, fontsize=8)
    ax.set_ylabel("stall per add_message (us, log)")
    ax.set_title("Capture cost (s = concurrent sessions)", fontsize=9)
    ax.legend(fontsize=7)


def _agents(ax: Any, agents: dict[str, Any]) -> None:
    steps = agents["steps"]
    sessions = [s["sessions"] for s in steps]
    ax.plot(sessions, [s["slowdown"] for s in steps], marker="o", label="session slowdown")
    ax.plot(sessions, [s["cpu_busy"] for s in steps], marker="s", label="CPU busy (cores)")
    ax.axhline(agents["slowdown_limit"], color="black", linewidth=0.8, linestyle="--", label="slowdown limit")
    ax.set_xlabel("concurrent AgentSessions")
    ax.set_title(f"Agent scale (time_scale {agents['time_scale']}): sustained "
                 f"{agents['max_sustained_sessions']}, capture {agents['capture_share']:.0%} of CPU", fontsize=9)
    ax.legend(fontsize=7)


def write(path: Path, results: dict[str, Any]) -> Path:
    """Draw whichever sections ran into a 2x2 figure at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    panels = (("delivery", _throughput), ("backlog", _drain), ("capture", _capture), ("agent_scale", _agents))
    for ax, (name, draw) in zip(axes.flat, panels, strict=True):
        if name in results:
            draw(ax, results[name])
        else:
            ax.set_axis_off()
    meta = results["meta"]
    figure.suptitle(f"voicelog benchmarks ({meta['sizes']}) {meta['date']}, {meta['nproc']} cores, {meta['cpu']}",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
