"""voicelog's settings, parsed once at start into frozen values and passed down."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_memory": ("MemoryBackend", "MemorySettings"),
    "_secret": ("Secret",),
    "_settings": ("AgentSettings", "CONFIG_ENV", "ChatHistorySettings", "ConfigError", "ENV_PREFIX",
        "HttpSettings", "LoggingSettings", "ManagerApiSettings", "MqttSettings", "Settings",
        "ShipperSettings", "load_settings"),
})
