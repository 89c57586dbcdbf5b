"""Per-session JSON backups: the format, the one reader, and the atomic writer."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_folder": ("STALE_TEMP_SECONDS", "remove_stale_temp_files", "temp_files", "tighten_data_dir"),
    "_format": ("BACKUP_FORMAT", "BACKUP_VERSION", "Backup", "backup_file_name", "day_folder",
                "document_records", "iso_ms", "iso_to_ms", "READABLE_VERSIONS", "session_document"),
    "_reader": ("MAX_BACKUP_BYTES", "BackupError", "BackupTooNew", "backup_files", "damaged_backups",
                "linked_files", "load_document", "problems", "read_backup", "read_document"),
    "_writer": ("BackupWriter", "SessionSource"),
})
