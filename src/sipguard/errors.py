"""One hierarchy for every error sipguard raises on purpose.

Errors carry what the edge needs to answer them: a `ProtocolError` knows the SIP
response it means (h11's `error_status_hint` idea), a `ConfigError` the key it names.
"""

from __future__ import annotations


class SipguardError(Exception):
    """Base of every deliberate sipguard error."""


class ProtocolError(SipguardError):
    """A SIP message broke the grammar or a limit; `status` is the response it calls for."""

    def __init__(self, message: str, status: int = 400, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason or message


class ConfigError(SipguardError):
    """A configuration value is wrong; the message names the key (e.g. `sip.listen[1]`)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


class StoreError(SipguardError):
    """The store could not be read or written."""


class PolicyError(SipguardError):
    """A policy input (number, campaign, date) is unusable."""


class UsageError(SipguardError):
    """A command-line mistake; printed as one sentence, exit status 2."""
