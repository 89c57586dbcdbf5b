"""Delivery: the host's shipper, each session's sender, the secret gate and the wire format."""

from voicelog.services._face import lazy_face

__all__, __getattr__, __dir__ = lazy_face(__name__, {
    "_audio": ("ENCODING_GRACE_MS", "ClipAttacher", "wav_base64"),
    "_gate": ("DeliveryGate",),
    "_observer": ("DeliveryObserver", "SilentObserver"),
    "_session_sender": ("NO_MAC_REASON", "RoundResult", "SessionSender", "UNREADABLE_REASON"),
    "_shipper": ("ShipSummary", "Shipper", "StopReason", "is_due"),
    "_wire": ("first_wire_time", "idempotency_key", "to_unit", "wire_parts"),
})
