"""sipguard: a consent-aware SIP gateway for outbound contact centers."""

__version__ = "0.1.0"
