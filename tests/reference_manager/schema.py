"""DDL of the reference Manager: the upstream chat tables as the contract gives them, plus our own.

The two `ai_agent_chat_*` tables are the upstream DDL verbatim (only `IF NOT EXISTS` added so a
hand-run server can reuse its database). The `ref_*` tables stand in for the parts of the real
Manager we do not model (devices, agents) and for the idempotency keys the stock Manager lacks.
"""

CONTENT_TYPES = {"varchar": "VARCHAR(1024)", "text": "TEXT"}

_CHAT_HISTORY = """
CREATE TABLE IF NOT EXISTS ai_agent_chat_history (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  mac_address VARCHAR(50), agent_id VARCHAR(32), session_id VARCHAR(50),
  chat_type TINYINT(3), content {content_type},
  audio_id VARCHAR(32),
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  INDEX (mac_address), INDEX (session_id), INDEX (agent_id), INDEX (agent_id, session_id, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

_CHAT_AUDIO = "CREATE TABLE IF NOT EXISTS ai_agent_chat_audio (id VARCHAR(32) PRIMARY KEY, audio LONGBLOB)"

_AGENT = """
CREATE TABLE IF NOT EXISTS ref_agent (
  id VARCHAR(32) PRIMARY KEY,
  chat_history_conf TINYINT NOT NULL DEFAULT 1
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

# nopad_bin: the Manager compares MACs as Java strings, so neither case nor trailing spaces may match.
_DEVICE = """
CREATE TABLE IF NOT EXISTS ref_device (
  mac_address VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin PRIMARY KEY,
  agent_id VARCHAR(32) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

_IDEMPOTENCY_KEY = """
CREATE TABLE IF NOT EXISTS ref_idempotency_key (
  idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin PRIMARY KEY,
  response TEXT NOT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""


def table_statements(content_type: str = "varchar") -> dict[str, str]:
    """Return each table's CREATE TABLE statement by name, `content` typed per `content_type`."""
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"content_type must be one of {sorted(CONTENT_TYPES)}, not {content_type!r}")
    return {
        "ai_agent_chat_history": _CHAT_HISTORY.format(content_type=CONTENT_TYPES[content_type]),
        "ai_agent_chat_audio": _CHAT_AUDIO,
        "ref_agent": _AGENT,
        "ref_device": _DEVICE,
        "ref_idempotency_key": _IDEMPOTENCY_KEY,
    }
