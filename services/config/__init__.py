"""voicelog's settings, parsed once at start into frozen values and passed down."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_choices": ("ApiMode", "Durability", "LogFormat", "LogLevel", "MemoryBackend", "ReportTimeUnit"),
    "_types": ("ConfigError", "SECRET_MIN_CHARS", "Secret"),
    "_envfile": ("read_environment_file", "parse_environment"),
    "_model": ("AgentSettings", "AudioSettings", "ChatHistorySettings", "HttpSettings", "LoggingSettings",
               "ManagerApiSettings", "MemorySettings", "MqttSettings", "PluginModel", "Settings",
               "ShipperSettings"),
    "_load": ("CONFIG_ENV", "ENV_PREFIX", "load_settings"),
    "_render": ("render_config_yaml",),
})
