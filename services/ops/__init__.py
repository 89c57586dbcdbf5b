"""Running as a service: logging, metrics, the ops HTTP server, systemd, the MQTT fleet channel, doctor."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_box_figures": ("BoxFigures", "BoxFrame", "FigureSource", "frame", "manager_word"),
    "_doctor": ("run_checks",),
    "_http": ("MANAGER_PROBE_TTL", "ManagerHealth", "OpsHttpServer"),
    "_logging": ("add_secrets", "configure_logging", "settings_secrets"),
    "_metrics": ("BACKLOG_STATUSES", "Metrics", "SpoolSnapshot", "SpoolStats"),
    "_mqtt_commands": ("CommandRefused", "CommandVerifier", "FleetCommands", "sign_command"),
    "_mqtt_fleet": ("FleetChannel",),
    "_supervise": ("supervised",),
    "_sd_notify": ("Notifier",),
})
