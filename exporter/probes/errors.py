"""Map socket-level failures to the closed set of probe reasons."""

from __future__ import annotations

import errno
import ssl

from exporter.model.results import Reason

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EHOSTDOWN}


def reason_for(error: BaseException) -> tuple[Reason, str]:
    """The reason and a one-line detail for an exception raised while probing."""
    if isinstance(error, TimeoutError):
        return Reason.TIMEOUT, "no complete answer within the health check timeout"
    if isinstance(error, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS_ERROR, f"TLS handshake failed: {getattr(error, 'reason', None) or error}"
    if isinstance(error, ConnectionRefusedError):
        return Reason.CONNECTION_REFUSED, "connection refused: nothing listens on this port"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return Reason.CONNECTION_RESET, "the target reset the connection"
    if isinstance(error, OSError) and error.errno in _UNREACHABLE:
        return Reason.HOST_UNREACHABLE, f"no route to the target: {error.strerror}"
    if isinstance(error, OSError):
        return Reason.CONNECTION_ERROR, f"connection failed: {error.strerror or error}"
    return Reason.CONNECTION_ERROR, f"probe failed: {type(error).__name__}: {error}"
