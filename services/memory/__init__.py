"""Conversation memory: the recent turns a device's next session starts with, on one box or a fleet."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_erase": ("ERASED", "NOT_USED", "UNREACHABLE", "EraseReport", "MemoryEraser"),
    "_model": ("MEMORY_ITEM_PREFIX", "MemoryTurn", "RememberedTurn", "device_ref", "select", "session_ref"),
    "_open": ("close_memory_writer", "display_url", "open_memory_reader", "open_memory_writer",
              "redis_health"),
    "_reader": ("MemoryReader", "Outcome", "Preload"),
    "_redis": ("REDIS_ERRORS", "Keys", "RedisEraser", "RedisMemory", "RedisMemoryReset", "async_client",
               "sync_client"),
    "_writer": ("MemoryObserver", "RedisMemoryWriter", "WriterStats"),
})
