"""blinkstack: real-time eye open/closed state and blink events over gRPC."""

__version__ = "0.1.0"
