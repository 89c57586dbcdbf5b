"""What a ``backups`` command works on: the spool, the catalog and the sessions its arguments select.

The command module only wires arguments to handlers; opening the spool read-only or for
writing, turning filters into a ``SessionFilter`` and overriding the Manager are done here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from voicelog.services.config import Secret, Settings
from voicelog.services.spool import Spool
from voicelog.services.support import Catalog, SessionFilter, SessionView


def session_filter(args: argparse.Namespace) -> SessionFilter:
    """The sessions ``--mac``, ``--since``, ``--until`` and ``--status`` select."""
    return SessionFilter(macs=frozenset([args.mac]) if args.mac else frozenset(),
                         since_ms=args.since, until_ms=args.until,
                         statuses=frozenset(s.value for s in args.status or ()))


def export_views(catalog: Catalog, args: argparse.Namespace) -> list[SessionView]:
    """The whole sessions ``backups export`` writes: the one named, or those the filters pick."""
    if args.session:
        return [catalog.load(args.session)]
    views = catalog.summaries(session_filter(args))
    return [catalog.load(str(v.backup_path) if v.source == "backup" else v.session.session_id)
            for v in views]


def readable(view: SessionView, settings: Settings) -> SessionView:
    """The view with encrypted content opened for display (or marked when no key opens it)."""
    from voicelog.services.sealing import cipher_from_settings

    cipher = cipher_from_settings(settings.chat_history.model_copy(update={"encrypt_content": True})) \
        if _has_key(settings) else None
    return view.opened(cipher)


def _has_key(settings: Settings) -> bool:
    history = settings.chat_history
    return bool(os.environ.get(history.encryption_keys_env) or history.encryption_keys_file)


def spool_for_support(settings: Settings, *, create: bool) -> Spool | None:
    """This process's own spool connection; None if there is none and ``create`` is off."""
    from voicelog.agent.wiring import host_spool

    if not create and not settings.chat_history.spool_file.exists():
        return None  # a read must not leave an empty spool where a wrong path points
    return host_spool(settings, checkpoint=False)  # a short command: SQLite's own checkpoints do


@contextlib.contextmanager
def open_catalog(settings: Settings) -> Iterator[Catalog]:
    """The spool (if there is one) and the backup folder, for commands that only read."""
    spool = spool_for_support(settings, create=False)
    try:
        yield Catalog(spool, Path(settings.chat_history.backup_dir))
    finally:
        if spool is not None:
            spool.close()


def data_location(settings: Settings, catalog: Catalog) -> str:
    """Where a command read: the spool (or that there is none) and the backup folder."""
    spool = settings.chat_history.spool_file
    spool_text = f"spool {spool}" if catalog.spool is not None else f"no spool (none at {spool})"
    return f"{spool_text} and backups {catalog.backup_dir}/ (config: {settings.source})"


def print_json(value: Any) -> None:
    """Machine-readable output on stdout, text as written (not ``\\u`` escapes)."""
    print(json.dumps(value, ensure_ascii=False, indent=1))


def warn_unreadable(catalog: Catalog) -> None:
    """Point at ``verify`` when some backup files were skipped as unreadable."""
    if catalog.unreadable:
        print(f"voicelog: {len(catalog.unreadable)} backup file(s) could not be read; "
              "run `voicelog backups verify`", file=sys.stderr)


def with_manager(settings: Settings, args: argparse.Namespace) -> Settings:
    """Settings with ``--manager-url``/``--secret`` applied; ValueError if a send has nowhere to go."""
    api = settings.manager_api
    if args.manager_url:
        url = args.manager_url.rstrip("/")
        if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
            raise ValueError("--manager-url must be an http(s) URL with the context path, "
                             "e.g. http://host:8002/xiaozhi")
        api = api.model_copy(update={"url": url})
    if args.secret:
        api = api.model_copy(update={"secret": Secret(args.secret)})
    if not args.dry_run and not api.url:
        raise ValueError("no Manager to send to: set manager_api.url or pass --manager-url")
    if not args.dry_run and not api.secret:
        raise ValueError("no server secret: set MANAGER_API_SECRET or pass --secret")
    return settings.model_copy(update={"manager_api": api})
