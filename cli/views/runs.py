"""The closing summaries of ``ship --once`` and ``simulate``: what happened, in words.

Turns and rows are counted apart (a turn longer than ``max_content_chars`` reaches the Manager
as several rows), older backlog is named as such, and every summary says where the data lives.
"""

from __future__ import annotations

from typing import Any

from voicelog.cli.views.words import plural, status_counts, turns_and_rows
from voicelog.services.config import Settings
from voicelog.services.shipping import ShipSummary, StopReason

WHAT_TO_DO = {
    StopReason.SECRET_REFUSED: "set MANAGER_API_SECRET (manager_api.secret) to the Manager's server.secret",
    StopReason.MISDIRECTED: "check manager_api.url (the context path), or wait out a Manager redeploy",
    StopReason.UNREACHABLE: "the Manager gave no answer (down, unreachable or slower than "
                            "manager_api.timeout); check manager_api.url",
    StopReason.DEADLINE: "the rest waits in the spool for the daemon or the next `ship --once` "
                         "(--deadline gives it longer)",
}
WHY_LEFT = {"parked": "device not bound to an agent, or no valid MAC: "
                      "`voicelog backups list --status parked`",
            "dead_letter": "refused by the Manager: `voicelog backups list --status dead-letter`",
            "pending": "waiting for the Manager: the next run or the daemon sends them",
            "open": "sessions still being captured"}


def where_data_lives(settings: Settings) -> str:
    """``spool /x/spool.db, backups /x/``: the line every summary ends with."""
    history = settings.chat_history
    return f"data: spool {history.spool_file}, backups {history.backup_dir}/ (config: {settings.source})"


def ship_once_lines(summary: ShipSummary, settings: Settings, seconds: float) -> list[str]:
    """What ``ship --once`` did, what is left and why, and where."""
    lines = [f"delivered {turns_and_rows(summary.delivered, summary.rows)} to "
             f"{settings.manager_api.url} in {seconds:.1f} s"
             + (f"; this run parked {summary.parked} and dead-lettered {summary.dead_lettered}"
                if summary.parked or summary.dead_lettered else "")]
    if summary.repaired:
        lines.append(f"repaired: {plural(sum(summary.repaired.values()), 'turn')} of "
                     f"{plural(len(summary.repaired), 'session')} had no session row (left by an older "
                     "voicelog); gave them one, MAC from the room name")
    if summary.stopped is not None:
        lines.append(f"stopped early: {stop_sentence(summary.stopped, summary.stopped_because)}")
    if summary.remaining:
        lines.append(f"left undelivered: {status_counts(summary.remaining)}")
        lines += [f"  {status_counts({name: n})}: {WHY_LEFT[name]}"
                  for name, n in summary.remaining.items() if n and name in WHY_LEFT]
    else:
        lines.append("nothing undelivered is left in the spool")
    if summary.memory_flushed is not None:
        lines.append("memory: every sealed turn is in Redis" if summary.memory_flushed else
                     "memory: Redis unreachable, turns wait in the spool for the next push")
    if summary.repairs_waiting:
        lines.append(f"{plural(summary.repairs_waiting, 'damaged spool')} set aside in quarantine wait for "
                     "free disk space to be merged back (see the log: spool_repair_deferred); their turns "
                     "are delivered after")
    lines.append(where_data_lives(settings))
    return lines


def stop_sentence(reason: StopReason | str, because: str) -> str:
    """Why a run stopped before trying everything, and what to do about it."""
    reason = StopReason(reason)
    said = {StopReason.SECRET_REFUSED: "the Manager refuses our secret",
            StopReason.MISDIRECTED: "the endpoint does not answer as the Manager",
            StopReason.UNREACHABLE: "the Manager is unreachable",
            StopReason.DEADLINE: "the time ran out"}[reason]
    return f"{said} ({because}); {WHAT_TO_DO[reason]}; nothing was lost"


def simulate_lines(summary: Any, settings: Settings) -> list[str]:
    """What ``simulate`` captured and, with a Manager, delivered: this run's turns and older ones."""
    lines = [
        f"simulated {plural(summary.sessions, 'session')} in {summary.seconds:.1f} s "
        f"({summary.sessions_failed} failed)",
        f"captured {plural(summary.user_turns, 'child turn')} and {plural(summary.agent_turns, 'toy reply')} "
        f"({summary.interrupted} interrupted), skipped {summary.skipped_empty} empty, lost {summary.lost}",
    ]
    lines.append(memory_line(summary))
    if not summary.delivering:
        lines.append("delivery: off (no manager_api.url, or --no-deliver); the turns wait in the spool")
    else:
        waiting = {k: v for k, v in summary.delivery.items() if k != "delivered"}
        ours = turns_and_rows(summary.delivery.get("delivered", 0), summary.delivered_rows)
        lines.append(f"delivered this run's {ours} to {settings.manager_api.url}"
                     + (f"; not delivered: {status_counts(waiting)}" if any(waiting.values()) else ""))
        if summary.backlog_delivered:
            lines.append(f"also delivered {turns_and_rows(summary.backlog_delivered, summary.backlog_rows)} "
                         "captured before this run (older backlog in the spool)")
        if summary.delivery_stopped:
            lines.append("delivery stopped: " + stop_sentence(summary.delivery_stopped,
                                                              summary.delivery_stopped_because))
    lines.append(where_data_lives(settings))
    return lines


def memory_line(summary: Any) -> str:
    """How many turns the simulated sessions were started with, and whether Redis got everything."""
    started = [p for p in summary.per_session if p.get("memory")]
    if not started:
        return "memory: off (memory.enabled: false), or no session had a valid MAC"
    remembered = sum(1 for p in started if p["preloaded_turns"])
    line = (f"memory: {plural(summary.preloaded_turns, 'turn')} preloaded into {remembered} of "
            f"{plural(len(summary.per_session), 'session')}")
    fell_back = sum(1 for p in started if p["memory"]["fell_back"])
    if fell_back:
        line += f"; {fell_back} read from the spool because Redis failed"
    if summary.memory_flushed is False:
        line += "; NOT everything reached Redis (the daemon pushes the rest when Redis is back)"
    return line
