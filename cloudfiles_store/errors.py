"""The package's exceptions.

Every failure other than a missing key (``KeyError``) is a :class:`CloudFilesError`
naming the operation, the key and the URL it went to (never a credential).
"""

from __future__ import annotations


class CloudFilesError(Exception):
    """A storage operation failed.

    Attributes: ``operation`` (get, put, delete, head, list), ``key``, ``url`` (without
    credentials), ``status`` (last HTTP status, 0 for local backends), ``reason`` (a short
    classification) and ``attempts`` (transfers tried, retries included).
    """

    def __init__(self, message: str = "", *, operation: str | None = None, key=None,
                 url: str | None = None, status: int = 0, reason: str | None = None,
                 attempts: int = 0):
        super().__init__(message)
        self.operation = operation
        self.key = key
        self.url = url
        self.status = status
        self.reason = reason
        self.attempts = attempts

    def __reduce__(self):
        return (_rebuild_error, (type(self), str(self), self.__dict__))


def _rebuild_error(cls, message, attrs):
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(attrs)
    return exc


class AuthenticationError(CloudFilesError):
    """The server refused the credentials (401/403, bad signature)."""


class TransientError(CloudFilesError):
    """A retryable failure (5xx, 429, reset, stall, truncation) that outlasted every retry."""


class ChecksumError(CloudFilesError):
    """The bytes received did not match the server's checksum, on every retry."""


class ProtocolError(CloudFilesError):
    """The server's response could not be understood."""


class NetworkError(CloudFilesError):
    """A transfer failure not worth retrying, such as a TLS certificate refused."""


class StorageIOError(CloudFilesError):
    """A local filesystem operation failed."""


class RequestError(CloudFilesError):
    """The server refused the request (a 4xx other than 401/403, or a 404 to a write)."""


class AlreadyExistsError(CloudFilesError):
    """A create-if-absent found the key present."""


class BucketNotFoundError(RequestError):
    """The bucket (or container) the store points into does not exist: S3's NoSuchBucket,
    a GCS listing or upload answered 404. Never a ``KeyError``: the store itself is missing,
    not a key in it."""


class BatchError(CloudFilesError):
    """Some operations of a batch failed; ``errors`` holds one exception per failed key.

    Raised only after every operation of the batch has finished: what succeeded stays.
    """

    def __init__(self, message: str = "", *, errors=(), **kwargs):
        super().__init__(message, **kwargs)
        self.errors = list(errors)


class InvalidKeyError(CloudFilesError, ValueError, TypeError):
    """A key that is not a str, is empty, or has ``.``/``..`` segments, NUL or empty segments."""


class OptionError(CloudFilesError, TypeError):
    """An unknown option, or an option with a value of the wrong kind."""


class UnsupportedSchemeError(CloudFilesError, ValueError):
    """A URL whose scheme no backend handles."""


__all__ = [
    "CloudFilesError", "AuthenticationError", "TransientError", "ChecksumError",
    "ProtocolError", "NetworkError", "StorageIOError", "RequestError", "AlreadyExistsError",
    "BucketNotFoundError", "BatchError", "InvalidKeyError", "OptionError", "UnsupportedSchemeError",
]
