"""The daemon's /v1 routes: a device's memory and its sessions, for support staff and the console."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_inputs": ("BadInput", "parse_mac", "parse_session_id", "parse_since"),
    "_routes": ("Api", "build_api"),
})
