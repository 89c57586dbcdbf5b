"""The reference Manager's database access: bindings, chat rows, audio, idempotency keys."""

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import aiomysql
import pymysql

from tests.kits.mariadb import MariaDB

from .schema import table_statements

# Strict mode turns an overlong value into an error, as on the real Manager, not a truncation.
# UTC session time zone, so DATETIME values mean UTC whatever the server's zone is.
_SESSION_SETUP = "SET SESSION sql_mode = 'STRICT_ALL_TABLES', time_zone = '+00:00'"
_DUPLICATE_KEY = 1062


@dataclass(frozen=True)
class Binding:
    """The agent a MAC is bound to and that agent's chat history setting."""

    agent_id: str
    chat_history_conf: int


@dataclass(frozen=True)
class Chat:
    """One row to store in ai_agent_chat_history, with its audio if any."""

    mac_address: str
    agent_id: str
    session_id: str
    chat_type: object
    content: str
    created_at: datetime
    audio: bytes | None = None


class ChatStore:
    """Reads and writes the reference Manager's tables through an aiomysql pool."""

    def __init__(self, pool: aiomysql.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, server: MariaDB, database: str, pool_size: int) -> "ChatStore":
        """Open a pool of strict, UTC sessions on `database`."""
        pool = await aiomysql.create_pool(
            host=server.host, port=server.port, user=server.user, password=server.password,
            db=database, charset="utf8mb4", autocommit=False, minsize=1, maxsize=pool_size,
            init_command=_SESSION_SETUP,
        )
        return cls(pool)

    async def close(self) -> None:
        """Close the pool and wait for its connections to end."""
        self._pool.close()
        await self._pool.wait_closed()

    async def create_tables(self, content_type: str) -> None:
        """Create any missing table (existing ones are left as they are)."""
        existing = {next(iter(row.values())) for row in await self._select("SHOW TABLES")}
        missing = [ddl for name, ddl in table_statements(content_type).items() if name not in existing]
        await self._execute(*((ddl, ()) for ddl in missing))

    async def bind(self, mac: str, agent_id: str, chat_history_conf: int) -> None:
        """Bind `mac` to `agent_id` and set that agent's chat history setting."""
        await self._execute(
            ("INSERT INTO ref_agent (id, chat_history_conf) VALUES (%s, %s) "
             "ON DUPLICATE KEY UPDATE chat_history_conf = VALUES(chat_history_conf)",
             (agent_id, chat_history_conf)),
            ("INSERT INTO ref_device (mac_address, agent_id) VALUES (%s, %s) "
             "ON DUPLICATE KEY UPDATE agent_id = VALUES(agent_id)",
             (mac, agent_id)),
        )

    async def unbind(self, mac: str) -> None:
        """Forget the device `mac`."""
        await self._execute(("DELETE FROM ref_device WHERE mac_address = %s", (mac,)))

    async def binding(self, mac: str) -> Binding | None:
        """Return what `mac` (compared exactly) is bound to, or None."""
        rows = await self._select(
            "SELECT d.agent_id, COALESCE(a.chat_history_conf, 1) AS conf FROM ref_device d "
            "LEFT JOIN ref_agent a ON a.id = d.agent_id WHERE d.mac_address = %s", (mac,),
        )
        return Binding(rows[0]["agent_id"], rows[0]["conf"]) if rows else None

    async def replay(self, key: str) -> dict | None:
        """Return the answer stored with idempotency `key`, or None if the key is new."""
        rows = await self._select(
            "SELECT response FROM ref_idempotency_key WHERE idempotency_key = %s", (key,)
        )
        return json.loads(rows[0]["response"]) if rows else None

    async def save(self, chats: list[Chat], key: str | None, answer: dict) -> dict | None:
        """Store `chats` (and `key` with `answer`) in one transaction.

        Returns the earlier answer instead, storing nothing, when `key` was already stored;
        the key row goes first so a concurrent twin waits on its lock, then sees the duplicate.
        """
        async with self._pool.acquire() as conn:
            try:
                async with conn.cursor() as cur:
                    if key is not None and not await _claim_key(cur, key, answer):
                        await conn.rollback()
                        return await self.replay(key)
                    for chat in chats:
                        await _insert_chat(cur, chat)
                await conn.commit()
            except BaseException:
                await _rollback_quietly(conn)
                raise
        return None

    async def rows(self, session_id: str | None = None) -> list[dict]:
        """Return stored chat rows (optionally of one session) ordered by created_at, id."""
        where, args = ("WHERE session_id = %s", (session_id,)) if session_id is not None else ("", ())
        return await self._select(
            "SELECT mac_address, agent_id, session_id, chat_type, content, audio_id, created_at "
            f"FROM ai_agent_chat_history {where} ORDER BY created_at, id", args,
        )

    async def audio(self, audio_id: str) -> bytes | None:
        """Return the stored audio bytes for `audio_id`, or None."""
        rows = await self._select("SELECT audio FROM ai_agent_chat_audio WHERE id = %s", (audio_id,))
        return rows[0]["audio"] if rows else None

    async def sessions(self, agent_id: str, page: int, limit: int) -> tuple[int, list[dict]]:
        """Return the agent's session count and one page of sessions, newest first."""
        total = await self._select(
            "SELECT COUNT(DISTINCT session_id) AS n FROM ai_agent_chat_history WHERE agent_id = %s",
            (agent_id,),
        )
        # Title = the first user message: MIN over "created_at|content" picks the earliest, and
        # the content starts after the 23-character DATETIME(3) text and its separator.
        page_rows = await self._select(
            "SELECT session_id, MIN(created_at) AS created_at, COUNT(*) AS chat_count, "
            "SUBSTRING(MIN(CASE WHEN chat_type = 1 THEN CONCAT(created_at, '|', content) END), 25, 50) "
            "AS title FROM ai_agent_chat_history WHERE agent_id = %s GROUP BY session_id "
            "ORDER BY created_at DESC LIMIT %s OFFSET %s",
            (agent_id, limit, (page - 1) * limit),
        )
        return total[0]["n"], page_rows

    async def chat_history(self, agent_id: str, session_id: str) -> list[dict]:
        """Return one session's chats ordered by created_at only, as the console does."""
        return await self._select(
            "SELECT created_at, chat_type, content, audio_id, mac_address FROM ai_agent_chat_history "
            "WHERE agent_id = %s AND session_id = %s ORDER BY created_at", (agent_id, session_id),
        )

    async def _execute(self, *steps: tuple[str, tuple]) -> None:
        """Run (sql, args) steps in one transaction."""
        async with self._pool.acquire() as conn:
            try:
                async with conn.cursor() as cur:
                    for sql, args in steps:
                        await cur.execute(sql, args)
                await conn.commit()
            except BaseException:
                await _rollback_quietly(conn)
                raise

    async def _select(self, sql: str, args: tuple = ()) -> list[dict]:
        """Run one query and return its rows as dicts."""
        async with self._pool.acquire() as conn:
            async with conn.cursor(aiomysql.DictCursor) as cur:
                await cur.execute(sql, args)
                rows = list(await cur.fetchall())
            await conn.commit()  # end the read snapshot so the next query sees new rows
        return rows


async def _claim_key(cur: aiomysql.Cursor, key: str, answer: dict) -> bool:
    """Insert the idempotency key; False when it is already stored (a duplicate request)."""
    try:
        await cur.execute(
            "INSERT INTO ref_idempotency_key (idempotency_key, response) VALUES (%s, %s)",
            (key, json.dumps(answer, ensure_ascii=False)),
        )
    except pymysql.err.IntegrityError as error:
        if error.args[0] != _DUPLICATE_KEY:
            raise
        return False
    return True


async def _insert_chat(cur: aiomysql.Cursor, chat: Chat) -> None:
    """Insert one chat row, with its audio first when there is any."""
    audio_id = None
    if chat.audio is not None:
        audio_id = uuid.uuid4().hex
        # Sent as base64 text: aiomysql 0.3.2 cannot escape bytes with the PyMySQL installed here.
        await cur.execute(
            "INSERT INTO ai_agent_chat_audio (id, audio) VALUES (%s, FROM_BASE64(%s))",
            (audio_id, base64.b64encode(chat.audio).decode("ascii")),
        )
    await cur.execute(
        "INSERT INTO ai_agent_chat_history "
        "(mac_address, agent_id, session_id, chat_type, content, audio_id, created_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (chat.mac_address, chat.agent_id, chat.session_id, chat.chat_type, chat.content,
         audio_id, chat.created_at),
    )


async def _rollback_quietly(conn: aiomysql.Connection) -> None:
    # The connection may be the thing that broke; the original error is the one worth raising.
    try:
        await conn.rollback()
    except Exception:
        conn.close()
