"""Every SQL statement the spool runs, named by what it does; parameters are always bound.

Lists of values are bound as one JSON array and read with ``json_each``, so no statement is
ever assembled from values. Column lists come from ``_schema`` (constants, never input).
"""

from __future__ import annotations

from voicelog.services.spool._schema import SESSION_COLUMNS, SESSION_FIELDS, TURN_COLUMNS, TURN_FIELDS

# --- meta -------------------------------------------------------------------------------------
SCHEMA_VERSION_GET = "SELECT value FROM meta WHERE key='schema_version'"
SCHEMA_VERSION_SET = "INSERT INTO meta VALUES ('schema_version', ?)"
TABLE_COLUMNS = "SELECT name FROM pragma_table_info(?)"
META_SET = "INSERT OR REPLACE INTO meta VALUES (?, ?)"
CHECKPOINT_PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"
CHECKPOINT_TRUNCATE = "PRAGMA wal_checkpoint(TRUNCATE)"
CHECKPOINT_RESTART = "PRAGMA wal_checkpoint(RESTART)"
DATA_VERSION = "PRAGMA data_version"
WAL_AUTOCHECKPOINT_SET = "PRAGMA wal_autocheckpoint={:d}"
SECURE_DELETE_ON = "PRAGMA secure_delete=ON"
# Interior pages of an index keep copies of keys as dividers even after their rows are deleted:
# rebuilt, the old pages are freed (and zeroed under secure_delete=ON).
REINDEX_TURNS = "REINDEX turns"
REINDEX_SESSIONS = "REINDEX sessions"
# Rebuild the whole file: the only way to leave no fragment of erased rows in unused space inside
# pages (a page rebuilt by a split keeps old bytes between its cell pointers and its cells).
VACUUM = "VACUUM"
TEMP_STORE_DIRECTORY = "PRAGMA temp_store_directory={}"  # the quoted folder (constant: our own path)
TABLE_COLUMNS = "SELECT name FROM pragma_table_info(?)"

# --- sessions ---------------------------------------------------------------------------------
SESSION_OWNER = "SELECT owner FROM sessions WHERE session_id=?"
SESSION_OPEN = (
    "INSERT INTO sessions (session_id, mac, mac_valid, mac_source, started_ms, owner, updated_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET owner=excluded.owner,"
    " ended_ms=NULL, end_reason=NULL, updated_ms=excluded.updated_ms")
SESSION_GET = f"SELECT {SESSION_FIELDS} FROM sessions WHERE session_id=?"
SESSIONS_ALL = f"SELECT {SESSION_FIELDS} FROM sessions ORDER BY started_ms, session_id"
SESSIONS_LIVE = (f"SELECT {SESSION_FIELDS} FROM sessions WHERE ended_ms IS NULL"
                 " ORDER BY started_ms, session_id")
SESSIONS_ENDED = (f"SELECT {SESSION_FIELDS} FROM sessions WHERE ended_ms IS NOT NULL"
                  " ORDER BY started_ms, session_id")
SESSION_IDS = "SELECT session_id FROM sessions"
SESSION_IDS_WITH_PREFIX = ("SELECT session_id FROM sessions WHERE substr(session_id, 1, length(?1))=?1"
                           " ORDER BY session_id LIMIT ?2")
SESSION_IDS_OF_DEVICE = "SELECT session_id FROM sessions WHERE mac=? OR session_id=?"
SESSION_END = "UPDATE sessions SET ended_ms=?, end_reason=?, updated_ms=? WHERE session_id=?"
SESSION_ADD_SKIPPED = "UPDATE sessions SET skipped=skipped+? WHERE session_id=?"
SESSION_REQUEST_FLUSH = "UPDATE sessions SET flush_requested=1 WHERE session_id=?"
# Only a set flag is written: a no-op UPDATE of the row would still cost a WAL frame and a commit.
SESSION_CLEAR_FLUSH = "UPDATE sessions SET flush_requested=0 WHERE session_id=? AND flush_requested<>0"
SESSION_SET_AGENT = "UPDATE sessions SET agent_id=? WHERE session_id=?"
SESSION_SET_LAST_WIRE_TIME = "UPDATE sessions SET last_wire_time=? WHERE session_id=?"
SESSION_ASSIGN_MAC = ("UPDATE sessions SET mac=?, mac_valid=1, mac_source='replay', updated_ms=?"
                      " WHERE session_id=? AND mac_valid=0")
SESSION_DELETE = "DELETE FROM sessions WHERE session_id=?"
SESSION_INSERT_ROW = (f"INSERT OR IGNORE INTO sessions ({', '.join(SESSION_COLUMNS)})"
                      f" VALUES ({', '.join('?' * len(SESSION_COLUMNS))})")
SESSION_TOTALS = "SELECT COALESCE(SUM(ended_ms IS NULL), 0), COALESCE(SUM(skipped), 0) FROM sessions"
# One row per (session, status) with the session's columns; a session without turns has one
# row with a NULL status. Filters are bound: NULL means "do not filter".
SESSION_STATUS_COUNTS = (
    f"SELECT {', '.join('s.' + c.strip() for c in SESSION_FIELDS.split(','))}, t.status, COUNT(t.seq)"
    " FROM sessions s LEFT JOIN turns t ON t.session_id=s.session_id"
    " WHERE (?1 IS NULL OR s.session_id IN (SELECT value FROM json_each(?1)))"
    " AND (?2 IS NULL OR s.mac IN (SELECT value FROM json_each(?2)))"
    " AND (?3 IS NULL OR s.started_ms >= ?3) AND (?4 IS NULL OR s.started_ms < ?4)"
    " GROUP BY s.session_id, t.status ORDER BY s.started_ms, s.session_id")
# Ended before a cutoff, with how many turns and how many not yet done (delivered or skipped).
SESSIONS_ENDED_BEFORE = (
    f"SELECT {', '.join('s.' + c.strip() for c in SESSION_FIELDS.split(','))}, COUNT(t.seq),"
    " COALESCE(SUM(t.status NOT IN (SELECT value FROM json_each(?2))), 0)"
    " FROM sessions s LEFT JOIN turns t ON t.session_id=s.session_id"
    " WHERE s.ended_ms IS NOT NULL AND s.ended_ms < ?1 GROUP BY s.session_id ORDER BY s.ended_ms")
SESSION_STILL_EXPIRED = (
    "SELECT 1 FROM sessions WHERE session_id=?1 AND ended_ms < ?2 AND (?3 OR NOT EXISTS"
    " (SELECT 1 FROM turns WHERE session_id=?1 AND status NOT IN (SELECT value FROM json_each(?4))))")

# --- turns ------------------------------------------------------------------------------------
TURN_INSERT = (f"INSERT INTO turns ({TURN_FIELDS}, updated_ms) VALUES"
               f" ({', '.join('?' * (TURN_FIELDS.count(',') + 2))})")
TURN_UPDATE_OPEN = ("UPDATE turns SET content=?, interrupted=?, status=?, meta=COALESCE(?, meta),"
                    " updated_ms=? WHERE session_id=? AND seq=? AND status='open'")
TURN_SKIP_OPEN = ("UPDATE turns SET status='skipped', updated_ms=? WHERE session_id=? AND seq=?"
                  " AND status='open'")
TURNS_SEAL_OPEN = ("UPDATE turns SET status='pending', updated_ms=? WHERE session_id=?"
                   " AND status='open' AND content<>''")
TURNS_SKIP_EMPTY_OPEN = "UPDATE turns SET status='skipped', updated_ms=? WHERE session_id=? AND status='open'"
SESSION_POSITION = ("SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(report_ms), 0) FROM turns"
                    " WHERE session_id=?")
TURNS_OF_SESSION = f"SELECT {TURN_FIELDS} FROM turns WHERE session_id=? ORDER BY seq"
TURNS_OF_SESSION_IN = (f"SELECT {TURN_FIELDS} FROM turns WHERE session_id=?"
                       " AND status IN (SELECT value FROM json_each(?)) ORDER BY seq")
STATUS_COUNTS = "SELECT status, COUNT(*) FROM turns GROUP BY status"
STATUS_COUNTS_OF_SESSION = "SELECT status, COUNT(*) FROM turns WHERE session_id=? GROUP BY status"
TURN_COUNT_OF_SESSION = "SELECT COUNT(*) FROM turns WHERE session_id=?"
TURN_SEQS_OF_SESSION = "SELECT seq FROM turns WHERE session_id=?"
TURN_UPDATE_TIMES = "SELECT seq, updated_ms FROM turns WHERE session_id=?"
TURN_STATES = ("SELECT session_id, seq, status, attempts, last_error FROM turns"
               " WHERE session_id IN (SELECT value FROM json_each(?))")
DEVICES_WITH_TURNS_IN = ("SELECT COUNT(DISTINCT s.mac) FROM sessions s"
                         " JOIN turns t ON t.session_id=s.session_id"
                         " WHERE t.status IN (SELECT value FROM json_each(?))")
OLDEST_CAPTURED_IN = "SELECT MIN(captured_ms) FROM turns WHERE status IN (SELECT value FROM json_each(?))"
TURNS_IN_STATUS = (
    "SELECT t.session_id, t.seq FROM turns t JOIN sessions s USING (session_id)"
    " WHERE t.status IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR t.session_id=?2)"
    " AND (?3 IS NULL OR s.mac=?3) ORDER BY t.session_id, t.seq")
TURNS_DELETE_OF_SESSION = "DELETE FROM turns WHERE session_id=?"
# Measured turns in insertion order (rowid), for /metrics; a turn still open may get its
# measurements later, so the lowest open rowid bounds how far a reader may move on.
TURNS_MEASURED_AFTER = ("SELECT rowid, meta FROM turns WHERE rowid > ? AND status<>'open'"
                        " AND meta IS NOT NULL ORDER BY rowid")
TURN_LOWEST_OPEN = "SELECT MIN(rowid) FROM turns WHERE status='open'"
TURN_LAST_ROWID = "SELECT COALESCE(MAX(rowid), 0) FROM turns"
TURN_INSERT_ROW = (f"INSERT OR IGNORE INTO turns ({', '.join(TURN_COLUMNS)})"
                   f" VALUES ({', '.join('?' * len(TURN_COLUMNS))})")
# Turns whose session row is gone (an older voicelog's purge during a live session), by
# session and status; and those of one device (MAC from the room name) or one session id.
ORPHAN_COUNTS = ("SELECT session_id, MIN(captured_ms), status, COUNT(*) FROM turns"
                 " WHERE session_id NOT IN (SELECT session_id FROM sessions)"
                 " GROUP BY session_id, status ORDER BY session_id")
ORPHAN_IDS_OF_DEVICE = (
    "SELECT DISTINCT session_id FROM turns WHERE session_id NOT IN (SELECT session_id FROM sessions)"
    " AND (session_id=?2 OR (?1<>'' AND lower(substr(session_id, -13))='_' || ?1))")

# --- erased sessions (tombstones) -------------------------------------------------------------
ERASED_INSERT = "INSERT OR REPLACE INTO erased_sessions VALUES (?, ?)"
ERASED_KEEP = "INSERT OR IGNORE INTO erased_sessions VALUES (?, ?)"
ERASED_GET = "SELECT 1 FROM erased_sessions WHERE digest=?"
ERASED_FORGET_BEFORE = "DELETE FROM erased_sessions WHERE erased_ms < ?"
LOSSES_FORGET_SESSION = "UPDATE losses SET session_id=NULL WHERE session_id=?"

# --- losses -----------------------------------------------------------------------------------
LOSS_INSERT = "INSERT INTO losses VALUES (?, ?, ?, ?, ?)"
LOSSES = "SELECT kind, SUM(count) FROM losses GROUP BY kind"
LOSSES_OF_SESSION = "SELECT kind, SUM(count) FROM losses WHERE session_id=? GROUP BY kind"

# --- delivery ---------------------------------------------------------------------------------
# A time recorded in the future (more than :future) means the wall clock jumped back since.
BACKLOG = (
    "SELECT t.session_id, s.mac, s.mac_valid, s.ended_ms IS NOT NULL, s.flush_requested,"
    " COUNT(*), MIN(CASE WHEN t.captured_ms > :future THEN 0 ELSE t.captured_ms END),"
    " MIN(CASE WHEN t.updated_ms > :future THEN 0 ELSE t.next_attempt_ms END),"
    " SUM(t.status=:parked) FROM turns t JOIN sessions s ON s.session_id=t.session_id"
    " WHERE t.status IN (:pending, :parked) GROUP BY t.session_id")
_DELIVERABLE_TURNS = (
    "turns WHERE session_id=:session AND status IN (:pending, :parked)"
    " AND seq < COALESCE((SELECT MIN(seq) FROM turns WHERE session_id=:session AND status='open'),"
    " 9223372036854775807)")
DELIVERABLE = f"SELECT {TURN_FIELDS} FROM {_DELIVERABLE_TURNS} ORDER BY seq"
HAS_DELIVERABLE = f"SELECT EXISTS (SELECT 1 FROM {_DELIVERABLE_TURNS})"
TURN_PARTS_SENT = "SELECT parts_sent FROM turns WHERE session_id=? AND seq=?"
TURN_SET_WIRE_TIME = "UPDATE turns SET wire_time=?, wire_limit=? WHERE session_id=? AND seq=?"
TURN_SET_PARTS_SENT = "UPDATE turns SET parts_sent=? WHERE session_id=? AND seq=?"
TURN_MARK_DELIVERED = ("UPDATE turns SET status='delivered', delivered_ms=?, attempts=attempts+1,"
                       " last_error=NULL, updated_ms=? WHERE session_id=? AND seq=?")
TURN_MARK_FAILED = ("UPDATE turns SET status=?, attempts=attempts+1, last_error=?, next_attempt_ms=?,"
                    " updated_ms=? WHERE session_id=? AND seq=?")
TURN_REQUEUE_FAILED = ("UPDATE turns SET status='pending', next_attempt_ms=0, updated_ms=? WHERE"
                       " session_id=? AND seq=? AND status IN ('parked','dead_letter')")
TURN_REQUEUE_DELIVERED = ("UPDATE turns SET status='pending', next_attempt_ms=0, parts_sent=0,"
                          " updated_ms=? WHERE session_id=? AND seq=? AND status='delivered'")
TURN_DUE_NOW = "UPDATE turns SET next_attempt_ms=0 WHERE session_id=? AND seq=? AND status='pending'"

# --- conversation memory ----------------------------------------------------------------------
# Sealed turns with words ('open' is still being captured, 'skipped' said nothing).
_REMEMBERED = "t.status IN ('pending', 'delivered', 'parked', 'dead_letter') AND t.content <> ''"
# A device's newest remembered turns since :floor and after its forget cut-off, newest first.
# The device's sessions come from sessions_by_mac, then each one's turns by (session_id, seq);
# CROSS JOIN keeps that order (left to right, SQLite's rule): with no statistics the planner
# would otherwise walk turns_by_status over every turn of the spool (25 ms at 20k turns).
MEMORY_RECENT = (
    "SELECT t.session_id, t.seq, t.chat_type, t.content, t.interrupted, t.captured_ms, s.agent_id"
    " FROM sessions s CROSS JOIN turns t ON t.session_id = s.session_id"
    " WHERE s.mac = :mac AND s.mac_valid = 1 AND (s.ended_ms IS NULL OR s.ended_ms >= :floor)"
    " AND t.captured_ms >= :floor"
    " AND t.captured_ms > COALESCE((SELECT cutoff_ms FROM memory_forget WHERE mac = :mac), -1)"
    f" AND {_REMEMBERED} ORDER BY t.captured_ms DESC, t.session_id DESC, t.seq DESC LIMIT :limit")
MEMORY_CUTOFF = "SELECT cutoff_ms FROM memory_forget WHERE mac=?"
# A later cut-off wins; ``synced`` follows the cut-off it came with.
MEMORY_FORGET = (
    "INSERT INTO memory_forget (mac, cutoff_ms, synced) VALUES (?1, ?2, ?3) ON CONFLICT(mac) DO UPDATE"
    " SET synced=CASE WHEN excluded.cutoff_ms >= cutoff_ms THEN excluded.synced ELSE synced END,"
    " cutoff_ms=MAX(cutoff_ms, excluded.cutoff_ms)")
MEMORY_FORGET_DELETE = "DELETE FROM memory_forget WHERE mac=?"
MEMORY_FORGETS_UNSYNCED = "SELECT mac, cutoff_ms FROM memory_forget WHERE synced=0 AND cutoff_ms >= ?"
MEMORY_FORGET_SYNCED = "UPDATE memory_forget SET synced=1 WHERE mac=? AND cutoff_ms=?"
MEMORY_PRELOAD_RECORD = "INSERT OR REPLACE INTO memory_preloads VALUES (?, ?, ?, ?, ?, ?)"
MEMORY_PRELOAD_COUNTS = ("SELECT outcome, store, fell_back, COUNT(*), COALESCE(SUM(turns), 0)"
                         " FROM memory_preloads GROUP BY outcome, store, fell_back")
MEMORY_PRELOADS_DELETE_OF_SESSION = "DELETE FROM memory_preloads WHERE session_id=?"
# The Redis writer's feed: every turn by rowid (insertion order), with what it needs to decide.
_FEED = (
    "SELECT t.rowid, t.session_id, t.seq, t.chat_type, t.content, t.interrupted, t.captured_ms,"
    " t.status, t.updated_ms, s.mac, s.mac_valid, s.agent_id, COALESCE(f.cutoff_ms, -1)"
    " FROM turns t JOIN sessions s ON s.session_id = t.session_id"
    " LEFT JOIN memory_forget f ON f.mac = s.mac")
MEMORY_FEED_AFTER = f"{_FEED} WHERE t.rowid > ? ORDER BY t.rowid LIMIT ?"
MEMORY_FEED_ROWS = f"{_FEED} WHERE t.rowid IN (SELECT value FROM json_each(?)) ORDER BY t.rowid"
# Where the writer starts again after a restart: every turn at or below it is in Redis or not
# to be remembered. The Redis epoch this host's pushes went to rides beside it.
MEMORY_META_GET = "SELECT value FROM meta WHERE key=?"
# After deleting turns, SQLite may hand a deleted rowid out again (it reuses rowids above the
# newest row left). The lowest such floor since the writer last looked tells it where to read again.
MEMORY_FLOOR_LOWER = (
    "INSERT INTO meta VALUES ('memory_floor', (SELECT COALESCE(MAX(rowid), 0) FROM turns))"
    " ON CONFLICT(key) DO UPDATE SET value=MIN(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))")
MEMORY_FLOOR_GET = "SELECT value FROM meta WHERE key='memory_floor'"
MEMORY_FLOOR_TAKE = "DELETE FROM meta WHERE key='memory_floor'"
MEMORY_LAST_ROWID = "SELECT COALESCE(MAX(rowid), 0) FROM turns"

# --- clips (a user turn's audio) ------------------------------------------------------------------
# Reserved only for a turn that exists, so a clip can never bring back an erased session's data.
CLIP_RESERVE = ("INSERT OR IGNORE INTO clips (session_id, seq, created_ms) SELECT ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM turns WHERE session_id=? AND seq=?)")
# Filled only while the box's clips stay within the cap (checked in the same statement, so two
# job processes filling at once cannot both pass it).
CLIP_FILL = ("UPDATE clips SET data=?, bytes=?, seconds=?, digest=? WHERE session_id=? AND seq=?"
             " AND data IS NULL AND (SELECT CAST(value AS INTEGER) FROM meta WHERE key='clip_bytes') + ? <= ?")
CLIP_BYTES = "SELECT CAST(value AS INTEGER) FROM meta WHERE key='clip_bytes'"
CLIP_DROP_UNFILLED = "DELETE FROM clips WHERE session_id=? AND seq=? AND data IS NULL"
CLIP_GET = "SELECT CAST(data AS BLOB), digest, created_ms, seconds, bytes FROM clips WHERE session_id=? AND seq=?"
CLIPS_TOTAL = "SELECT COUNT(data), COALESCE(SUM(bytes), 0) FROM clips"
CLIPS_OF_SESSION = "SELECT seq, seconds, bytes, data IS NULL FROM clips WHERE session_id=? ORDER BY seq"
CLIPS_SESSIONS = "SELECT DISTINCT session_id FROM clips ORDER BY session_id"
CLIPS_UNFINISHED_BEFORE = "DELETE FROM clips WHERE data IS NULL AND created_ms < ?"
COUNTER_ADD = ("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET"
               " value=CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER)")
COUNTER_GET = "SELECT CAST(value AS INTEGER) FROM meta WHERE key=?"
