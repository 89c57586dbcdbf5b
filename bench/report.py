"""Turn a run's results into the targets verdict, the printed table and BENCHMARKS.md."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:results:begin (written by python -m bench; edit outside these markers) -->"
END = "<!-- bench:results:end -->"
# Issue 16's targets (they replace issue 7's capture p99 <= 200 us, report >= 1.5x naive and
# session >= 10x report, which the analysis in BENCHMARKS.md showed bounded by the Manager).
CAPTURE_P99_US = 150
CAPTURE_P99_9_US = 1000
REPORT_VS_CEILING = 0.90
REPORT_CPU_VS_CEILING = 1.5
SESSION_VS_CEILING = 0.90
BACKLOG_VS_CEILING = 0.90
BACKLOG_RSS_MB = 50
PRELOAD_LOCAL_P99_MS = 5
PRELOAD_REDIS_P99_MS = 10
MEMORY_CAPTURE_P99_RATIO = 1.10
AUDIO_TURN_END_P99_US = 2_000


def _num(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[_num(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target (issues 7, 13 and 16): what this run measured, whether it is met, and what bounds it here."""
    found = []
    if "capture" in results:
        capture = results["capture"]
        p99 = capture["default_level_worst_p99_us"]
        p99_9 = capture.get("default_level_worst_p99_9_us", math.nan)
        worst = max((r for r in capture["rows"] if r["level"] == capture["default_level"]), key=lambda r: r["p99"])
        found.append({"target": f"capture p99 <= {CAPTURE_P99_US} us and p99.9 <= {CAPTURE_P99_9_US:,} us "
                                "(durability: process)",
                      "measured": f"p99 {p99} us, p99.9 {p99_9} us",
                      "met": p99 <= CAPTURE_P99_US and p99_9 <= CAPTURE_P99_9_US,
                      "context": f"CPU in the call p99 {worst['cpu_p99']} us; max {worst['max']} us"})
    if "delivery" in results:
        report, session = results["delivery"]["report"], results["delivery"]["session"]
        rates = {**report["variants"], **session["variants"]}
        cpu = {name: v["client_cpu_us_per_turn"] for name, v in rates.items()}
        order = report["order"]
        cpu_ratio = report.get("cpu_vs_ceiling", math.nan)
        found.append({"target": f"report mode >= {REPORT_VS_CEILING:.0%} of ceiling at "
                                f"{report['load']['concurrency']} in flight, client CPU/turn <= "
                                f"{REPORT_CPU_VS_CEILING}x the ceiling's, order kept",
                      "measured": f"{report['voicelog_vs_ceiling']:.0%}, CPU {cpu_ratio}x, lost {order['lost']}, "
                                  f"duplicated {order['duplicated']}, out of order {order['sessions_out_of_order']}",
                      "met": report["voicelog_vs_ceiling"] >= REPORT_VS_CEILING and order["order_kept"]
                      and cpu_ratio <= REPORT_CPU_VS_CEILING,
                      "context": f"client CPU {cpu['voicelog']} vs {cpu['ceiling']} us/turn (medians); rounds "
                                 f"{report.get('voicelog_vs_ceiling_rounds', '')}"})
        found.append({"target": f"session mode >= {SESSION_VS_CEILING:.0%} of its own ceiling",
                      "measured": f"{session['voicelog_vs_ceiling']:.0%}",
                      "met": session["voicelog_vs_ceiling"] >= SESSION_VS_CEILING and session["order"]["order_kept"],
                      "context": f"client CPU {cpu['voicelog_session']} vs {cpu['ceiling_session']} us/turn; "
                                 f"rounds {session.get('voicelog_vs_ceiling_rounds', '')}"
                                 + _bound_note(session)})
    if "backlog" in results:
        backlog = results["backlog"]
        growth = backlog["voicelog"]["rss_growth_mb"]
        found.append({"target": f"{backlog['turns']:,}-turn backlog drains at >= {BACKLOG_VS_CEILING:.0%}"
                                f" of ceiling, RSS growth <= {BACKLOG_RSS_MB} MB",
                      "measured": f"{backlog['voicelog_vs_ceiling']:.0%}, +{growth} MB",
                      "met": backlog["voicelog_vs_ceiling"] >= BACKLOG_VS_CEILING and growth <= BACKLOG_RSS_MB,
                      "context": f"client CPU {backlog['voicelog']['client_cpu_us_per_turn']} us/turn"})
    if "memory" in results:
        found += _memory_targets(results["memory"])
    if "audio" in results:
        found += _audio_targets(results["audio"])
    return found


def _memory_targets(section: dict[str, Any]) -> list[dict[str, Any]]:
    preload, capture = section["preload"], section["capture"]
    devices = f"{preload['devices']:,} devices"
    local, remote = preload["local_ms"]["p99"], preload["redis_ms"]["p99"]
    ratio = capture["median_round_p99_on_vs_off"]
    return [{"target": f"preload p99 <= {PRELOAD_LOCAL_P99_MS} ms, local ({devices})", "measured": f"{local} ms",
             "met": local <= PRELOAD_LOCAL_P99_MS,
             "context": f"p50 {preload['local_ms']['p50']} ms; spool {preload['spool_turns']:,} turns"},
            {"target": f"preload p99 <= {PRELOAD_REDIS_P99_MS} ms, Redis ({devices})", "measured": f"{remote} ms",
             "met": remote <= PRELOAD_REDIS_P99_MS,
             "context": f"p50 {preload['redis_ms']['p50']} ms; first read of a fresh client p99 "
                        f"{preload['redis_cold_ms']['p99']} ms"},
            {"target": f"capture p99 with memory on within {MEMORY_CAPTURE_P99_RATIO - 1:.0%} of off",
             "measured": f"{ratio}x (median round p99); pooled p99 {capture['p99_on_vs_off']}x",
             "met": ratio <= MEMORY_CAPTURE_P99_RATIO,
             "context": f"writer CPU {capture['writer_cpu_share']:.1%} of a core; turn to Redis p99 "
                        f"{capture['redis_lag_ms']['p99']} ms"}]


def _audio_targets(section: dict[str, Any]) -> list[dict[str, Any]]:
    end, codec = section["turn_end_us"], section["codec"]
    return [{"target": f"audio on: turn-end p99 stall <= {AUDIO_TURN_END_P99_US} us (clip cut and reserved "
                       "on the loop, encoded off it)",
             "measured": f"{end['on']['p99']} us (off: {end['off']['p99']} us, {section['turn_end_p99_on_vs_off']}x)",
             "met": end["on"]["p99"] <= AUDIO_TURN_END_P99_US,
             "context": f"encode {codec['encode_ms_per_speech_s']} ms of CPU per s of speech on the audio "
                        f"thread; loop lag p99 on/off {section['loop_lag_p99_on_vs_off']}x"}]


def _audio(section: dict[str, Any]) -> list[str]:
    rows = [[name, section["turn_end_us"][mode]["n"], section["turn_end_us"][mode]["p50"],
             section["turn_end_us"][mode]["p99"], section["turn_end_us"][mode]["max"],
             section["loop_lag_us"][mode]["p50"], section["loop_lag_us"][mode]["p99"],
             section["loop_lag_us"][mode]["max"]]
            for name, mode in (("audio off", "off"), ("audio on", "on"))]
    frame, codec = section["frame_tee_us"], section["codec"]
    return [f"### 8. Audio per turn: {section['sessions']} sessions x {section['turns_per_session']} turns of "
            f"1.5 s speech (48 kHz frames), {section['rounds_per_mode']} alternating rounds per mode (us)", "",
            *_table(["mode", "turns", "turn end p50", "turn end p99", "turn end max", "loop lag p50",
                     "loop lag p99", "loop lag max"], rows), "",
            f"- turn end p99 on/off **{section['turn_end_p99_on_vs_off']}x** (median round "
            f"{section['median_round_p99_on_vs_off']}x); each frame's tee (resample + ring): p50 {frame['p50']}, "
            f"p99 {frame['p99']} us; loop lag p99 on/off {section['loop_lag_p99_on_vs_off']}x",
            f"- codec per second of speech: Opus encode **{codec['encode_ms_per_speech_s']} ms** (audio thread), "
            f"decode to WAV {codec['decode_to_wav_ms_per_speech_s']} ms (shipper); clip "
            f"{codec['opus_bytes_per_speech_s']} B/s on disk ({section['clip_bytes_per_speech_s']} B/s as "
            f"stored) vs WAV {codec['wav_bytes_per_speech_s']} B/s on the wire"]


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else math.nan


def _capture(section: dict[str, Any]) -> list[str]:
    rows = [[r["level"], r["sessions"], r["n"], r["p50"], r["p99"], r["p99_9"], r["max"], r["p99_vs_list"],
             r["cpu_p50"], r["cpu_p99"], r["cpu_p99_9"]] for r in section["rows"]]
    return ["### 1. Capture: event-loop stall per add_message (microseconds)", "",
            *_table(["level", "sessions", "turns", "p50", "p99", "p99.9", "max", "p99 / list",
                     "CPU p50", "CPU p99", "CPU p99.9"], rows), "",
            "- stall = wall time of the call (the loop is blocked for all of it); CPU = this thread's CPU "
            "time in the call. A stall far above its CPU is waiting: an fsync, or the process being "
            "preempted on a busy machine."]


def _delivery(section: dict[str, Any]) -> list[str]:
    report, session = section["report"], section["session"]
    load = report["load"]
    rows = [[name, v["turns_per_s"], v["client_cpu_us_per_turn"], v.get("server_cpu_us_per_turn", "n/a"),
             " / ".join(map(_num, v["rounds_turns_per_s"]))]
            for part in (report, session) for name, v in part["variants"].items()]
    order = report["order"]
    return [f"### 2-3. Delivery to the reference Manager: {load['sessions']} sessions x "
            f"{load['turns_per_session']} turns, {load['concurrency']} sessions in flight, "
            f"median of {load['rounds']} interleaved rounds", "",
            *_table(["variant", "turns/s", "client CPU us/turn", "Manager+MariaDB CPU us/turn",
                     "each round (turns/s)"], rows), "",
            f"- report mode: voicelog/ceiling **{report['voicelog_vs_ceiling']}** (median of the rounds' "
            f"paired ratios {report.get('voicelog_vs_ceiling_rounds', '')}), client CPU per turn "
            f"**{report.get('cpu_vs_ceiling', 'n/a')}x** the ceiling's, "
            f"voicelog/naive **{report['voicelog_vs_naive']}**; order in MariaDB: {order['sessions']} sessions, "
            f"lost {order['lost']}, duplicated {order['duplicated']}, out of order {order['sessions_out_of_order']}",
            f"- session mode: voicelog/ceiling (session endpoint) **{session['voicelog_vs_ceiling']}** "
            f"(paired {session.get('voicelog_vs_ceiling_rounds', '')}), client CPU per turn "
            f"{session.get('cpu_vs_ceiling', 'n/a')}x the ceiling's, voicelog session/report "
            f"{session['session_vs_report']}x; order: lost "
            f"{session['order']['lost']}, out of order {session['order']['sessions_out_of_order']}",
            *_cpu_bound_lines(report, session)]


def _bound_note(part: dict[str, Any]) -> str:
    bound = part.get("cpu_bound")
    if not bound:
        return ""
    return (f"; the cores allow {bound['reachable']}, 0.90 needs client CPU <= "
            f"{bound['client_budget_us']} us/turn")


def _cpu_bound_lines(report: dict[str, Any], session: dict[str, Any]) -> list[str]:
    """What the shared cores allow: the CPU-bound ratio and the client budget for 0.90."""
    if "cpu_bound" not in report:
        return []
    lines = [("- what the cores allow (client + Manager + MariaDB CPU per turn, the ceiling's over "
              "voicelog's, paired per round; and the client CPU per turn at which voicelog would reach "
              "0.90 of the ceiling, given the server CPU it causes):")]
    for name, part in (("report", report), ("session", session)):
        bound = part["cpu_bound"]
        lines.append(f"  - {name} mode: reachable **{bound['reachable']}** (rounds {bound['reachable_rounds']}); "
                     f"client budget for 0.90: {bound['client_budget_us']} us/turn")
    return lines


def _latency(section: dict[str, Any]) -> list[str]:
    lat = section["latency_ms"]
    return ["### 4. End-to-end latency: capture to row committed in MariaDB (ms)", "",
            *_table(["sessions", "turn gap (s)", "send_interval (s)", "batch", "poll (s)", "turns",
                     "p50", "p99", "max"],
                    [[section["sessions"], "-".join(map(_num, section["turn_gap_s"])), section["send_interval_s"],
                      section["batch_size"], section["poll_interval_s"], section["delivered"],
                      lat["p50"], lat["p99"], lat["max"]]])]


def _backlog(section: dict[str, Any]) -> list[str]:
    ceiling, voicelog = section["ceiling"], section["voicelog"]
    rows = [["ceiling (keep-alive loop)", ceiling["turns_per_s"], ceiling["first_to_last_row_s"], "-", "-", "-"],
            ["voicelog ship --once", voicelog["turns_per_s"], voicelog["first_to_last_row_s"],
             voicelog["client_cpu_us_per_turn"], voicelog["rss_at_first_row_mb"], voicelog["rss_growth_mb"]]]
    return [f"### 5. Backlog drain: {section['turns']:,} pending turns in {section['sessions']:,} sessions, "
            f"{section['concurrency']} in flight", "",
            *_table(["variant", "turns/s", "first-to-last row (s)", "client CPU us/turn", "RSS at start (MB)",
                     "RSS growth (MB)"], rows), "",
            f"- voicelog/ceiling **{section['voicelog_vs_ceiling']}**"]


def _agents(section: dict[str, Any]) -> list[str]:
    rows = [[s["sessions"], s["turns"], s["median_session_s"], s["slowdown"], s["loop_lag_p99_ms"], s["cpu_busy"],
             s["cpu_us_per_turn"], s["capture_cpu_us_per_turn"], s["capture_share"], s["sustained"]]
            for s in section["steps"]]
    more = "" if section["ceiling_reached"] else " (the ramp ended before a step failed: at least this many)"
    return [f"### 6. Agent scale: scripted AgentSessions in one process, time_scale {section['time_scale']}, "
            f"{section['script_turns']}-turn script", "",
            *_table(["sessions", "rows", "median session (s)", "slowdown", "loop lag p99 (ms)", "CPU busy",
                     "CPU us/turn", "capture CPU us/turn", "capture share", "sustained"], rows), "",
            f"- sustained: **{section['max_sustained_sessions']}** concurrent sessions{more}; capture "
            f"{section['capture_cpu_us_per_turn']} us/turn ({section['capture_turn_path_us_per_turn']} in the "
            f"turn handlers, {section['capture_session_end_us_per_turn']} at session end) of "
            f"{section['cpu_us_per_turn']} us/turn for the whole session ({section['capture_share']:.1%})"]


def _memory(section: dict[str, Any]) -> list[str]:
    preload, capture = section["preload"], section["capture"]
    reads = [[name, m["n"], m["p50"], m["p99"], m["p99_9"], m["max"]]
             for name, m in (("local (spool)", preload["local_ms"]), ("redis (+ spool merge)", preload["redis_ms"]),
                             ("redis, fresh client", preload["redis_cold_ms"]))]
    stalls = [[mode, m["n"], m["p50"], m["p99"], m["p99_9"], m["max"]]
              for mode, m in (("memory off (writer stopped)", capture["off_us"]),
                              ("memory on (writer running)", capture["on_us"]))]
    lag = capture["redis_lag_ms"]
    return [f"### 7. Conversation memory: preload with {preload['devices']:,} devices "
            f"({preload['spool_turns']:,} turns over {preload['days']} day(s) in the spool, "
            f"{preload['redis_turns']:,} in Redis)", "",
            *_table(["read at session start (ms)", "reads", "p50", "p99", "p99.9", "max"], reads), "",
            *_table(["add_message (us)", "turns", "p50", "p99", "p99.9", "max"], stalls), "",
            f"- capture p99 on/off: median round **{capture['median_round_p99_on_vs_off']}x**, pooled "
            f"{capture['p99_on_vs_off']}x (p50 {capture['p50_on_vs_off']}x), {capture['rounds_per_mode']} "
            f"alternating rounds per mode at 200 turns/s (round p99s, us: off {capture['round_p99_us']['off']}, "
            f"on {capture['round_p99_us']['on']}); the writer used {capture['writer_cpu_share']:.1%} of a core "
            f"while capture ran; it pushed "
            f"{preload['writer_turns_per_s']:,} turns/s when filling Redis; a turn reached Redis after "
            f"p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms"]


def table(results: dict[str, Any]) -> str:
    """Every section that ran, as markdown tables, then the targets."""
    renderers = {"capture": _capture, "delivery": _delivery, "latency": _latency, "backlog": _backlog,
                 "agent_scale": _agents, "memory": _memory, "audio": _audio}
    lines: list[str] = []
    for name, render in renderers.items():
        if name in results:
            lines += [*render(results[name]), ""]
    for name, error in results.get("failed", {}).items():
        lines += [f"### {name}: FAILED", "", "```", error[-2000:], "```", ""]
    if results.get("targets"):
        lines += ["### Targets", "", *_table(["target", "measured", "met", "in this run"],
                                             [[t["target"], t["measured"], t["met"], t["context"]]
                                              for t in results["targets"]])]
    return "\n".join(lines)


def _machine(meta: dict[str, Any]) -> list[str]:
    return [f"- date: {meta['date']}; commit {meta['commit']} "
            f"(+{meta['uncommitted_files']} files changed by work in progress at run time)",
            f"- machine: {meta['nproc']} cores, {meta['cpu']}, {meta['memory_gib']} GiB, Linux {meta['kernel']}",
            f"- software: Python {meta['python']}, SQLite {meta['sqlite']}, MariaDB {meta['mariadb']}, "
            f"aiohttp {meta['aiohttp']}, livekit-agents {meta['livekit_agents']}",
            f"- command: `{meta['command']}`; section times (s): {meta.get('section_seconds', {})}",
            f"- load average (1/5/15 min) at start and after each section: {meta.get('loadavg', {})}"]


def write_markdown(path: Path, results: dict[str, Any], plot_name: str | None) -> None:
    """Replace the generated block of BENCHMARKS.md, keeping the hand-written text around it."""
    block = [BEGIN, "", "## Results of the last full run", "", *_machine(results["meta"]), ""]
    if plot_name:
        block += [f"![throughput, drain, capture stall and agent scale]({plot_name})", ""]
    block += [table(results), "", END]
    old = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in old or END not in old:
        old = old.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = old.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + "\n".join(block) + tail, encoding="utf-8")
