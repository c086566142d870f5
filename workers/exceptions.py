"""Every exception the light service layer raises (settings, storage, job records, registry, leases)."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the service layer's own errors, so callers can tell them from library and driver errors."""


class ConfigurationError(ServiceError):
    """Settings are invalid; the message names each offending ANIMEGAN_* variable and what to set."""


class StorageError(ServiceError):
    """Object storage failed or is unreachable (after the client's own retries): a transient fault."""


class InvalidKey(ServiceError, ValueError):
    """A storage key or key part that could escape its folder or is not built from ids."""


class NotFound(ServiceError, KeyError):
    """A storage key that does not exist.

    Subclasses KeyError so `except KeyError` callers work, but keeps a readable message (KeyError's own
    str() would print the repr of its argument).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class IdempotencyConflict(ServiceError):
    """The same Idempotency-Key was reused with a different request body."""

    def __init__(self, owner: str, key: str, job_id: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} of owner {owner!r} was already used for job {job_id} with a different "
            "request; reuse a key only to retry the identical request, or send a new key"
        )
        self.owner = owner
        self.key = key
        self.job_id = job_id


class InvalidCursor(ServiceError, ValueError):
    """A listing cursor that this service did not hand out (or that was altered)."""


class InvalidName(ServiceError, ValueError):
    """An owner id, model name or other identifier outside its allowed alphabet or length."""


class ModelExists(ServiceError):
    """A model of that name is already registered in that namespace."""
