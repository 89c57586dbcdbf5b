"""The one seam to the Manager API: requests out, classified outcomes back."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_mock": ("MockTransport", "SentRequest", "envelope"),
    "_client": ("AGENT_ID_NEGATIVE_TTL", "AGENT_ID_TTL", "ManagerApiClient", "REPORT_PATH",
                "SECRET_CHECK_MAC", "SESSION_PATH", "report_body", "session_body"),
    "_transport": ("AiohttpTransport", "RawResponse", "Transport", "TransportError"),
    "_outcome": ("BODY_LIMIT", "DeliveryResult", "Outcome", "REASON_LIMIT", "Report", "SessionMessage",
                 "SessionUpload", "classify", "parse_retry_after", "split_content"),
})
