"""The one seam to the Manager API: requests out, classified outcomes back."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_client": ("AGENT_ID_NEGATIVE_TTL", "AGENT_ID_TTL", "AiohttpTransport", "ManagerApiClient",
        "REPORT_PATH", "RawResponse", "SECRET_CHECK_MAC", "SESSION_PATH", "Transport", "TransportError",
        "report_body", "session_body"),
    "_outcome": ("BODY_LIMIT", "DeliveryResult", "Outcome", "REASON_LIMIT", "Report", "SessionMessage",
        "SessionUpload", "classify", "parse_retry_after", "split_content"),
})
