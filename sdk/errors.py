"""One error root for ModelLine; every error knows its OPC UA StatusCode and CLI exit code.

The status codes are plain integers (values from OPC 10000-6 Annex A / asyncua's
``ua.StatusCodes``) so that the SDK does not depend on the OPC UA binding; the
servers map an error to ``ua.StatusCode(exc.status)`` in one place.
"""

from __future__ import annotations

from typing import ClassVar

# StatusCode values used below (OPC 10000-4 section 7.39, numeric values from OPC 10000-6).
BAD_INTERNAL_ERROR = 0x80020000
BAD_INVALID_ARGUMENT = 0x80AB0000
BAD_NOT_FOUND = 0x803E0000
BAD_SECURITY_CHECKS_FAILED = 0x80130000
BAD_CERTIFICATE_UNTRUSTED = 0x801A0000
BAD_CERTIFICATE_TIME_INVALID = 0x80140000
BAD_CERTIFICATE_REVOKED = 0x801D0000
BAD_DECODING_ERROR = 0x80070000
BAD_OUT_OF_RANGE = 0x803C0000
BAD_NOT_SUPPORTED = 0x803D0000
BAD_CONFIGURATION_ERROR = 0x80890000
BAD_COMMUNICATION_ERROR = 0x80050000
BAD_USER_ACCESS_DENIED = 0x801F0000
BAD_INVALID_STATE = 0x80AF0000
BAD_CONNECTION_CLOSED = 0x80AE0000
BAD_OUT_OF_MEMORY = 0x80030000
BAD_RESOURCE_UNAVAILABLE = 0x80040000
BAD_TYPE_MISMATCH = 0x80740000


# What each `modelline` exit code means (the README and `modelline --help` list these; a test
# checks that every error class below uses one of them).
EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "failure",
    2: "bad usage or input",
    3: "package rejected",
    4: "not found",
    5: "cloud source failed",
    6: "a device refused or failed an update",
    7: "a server or device cannot be reached, or the connection was lost",
    8: "the gateway's database is missing or damaged",
    70: "internal error",
    130: "interrupted",
}


class ModelLineError(Exception):
    """Root of every error ModelLine reports to a user; the message is one line."""

    status: ClassVar[int] = BAD_INTERNAL_ERROR
    exit_code: ClassVar[int] = 1


class UsageError(ModelLineError):
    """The caller asked for something that cannot be done as asked."""

    status = BAD_INVALID_ARGUMENT
    exit_code = 2


class OutOfRange(UsageError):
    """A number (or a count, a length) outside what can be kept and used again after a restart."""

    status = BAD_OUT_OF_RANGE


class TypeMismatch(UsageError):
    """A value of the wrong type, or an array where one value belongs (or the reverse)."""

    status = BAD_TYPE_MISMATCH


class NotFound(ModelLineError):
    """A named file, key, model, bucket or registry entry does not exist."""

    status = BAD_NOT_FOUND
    exit_code = 4


class InvalidState(ModelLineError):
    """The request is valid but cannot be carried out in the present state (e.g. nothing waits for Confirm)."""

    status = BAD_INVALID_STATE


class DatabaseUnusable(ModelLineError):
    """The gateway's database is missing (while packages exist), damaged, or unreadable; recovery is a command away."""

    status = BAD_CONFIGURATION_ERROR
    exit_code = 8


class AccessDenied(ModelLineError):
    """The caller's role does not allow the request."""

    status = BAD_USER_ACCESS_DENIED
    exit_code = 2


class ServerNotTrusted(UsageError):
    """A server's application certificate failed this client's check (untrusted, expired, revoked, or not the
    application it claims to be): the client does not open a session with it. The message says what to do."""

    status = BAD_SECURITY_CHECKS_FAILED


# --- keys -------------------------------------------------------------------------------------


class KeyFileError(ModelLineError):
    """A key file cannot be read, is of the wrong kind, or needs a passphrase."""

    status = BAD_CONFIGURATION_ERROR
    exit_code = 2


# --- building ---------------------------------------------------------------------------------


class BuildError(ModelLineError):
    """A package cannot be built from the given model, spec or data."""

    status = BAD_INVALID_ARGUMENT
    exit_code = 2


# --- verification: each reason a package is refused --------------------------------------------


class PackageRejected(ModelLineError):
    """A package failed verification; subclasses name the exact reason."""

    status = BAD_SECURITY_CHECKS_FAILED
    exit_code = 3


class NotAPackage(PackageRejected):
    """The file is not a readable zip archive."""

    status = BAD_DECODING_ERROR


class UnsafeArchiveEntry(PackageRejected):
    """An entry has an absolute path, '..', a link, or a duplicate name."""


class ArchiveTooLarge(PackageRejected):
    """An entry or the whole archive expands beyond the limits (zip bomb guard)."""


class ManifestInvalid(PackageRejected):
    """manifest.json is missing, not JSON, or does not match the manifest schema."""

    status = BAD_DECODING_ERROR


class SignatureMissing(PackageRejected):
    """The package carries no signature."""


class SignatureInvalid(PackageRejected):
    """The signature does not match the manifest bytes, or cannot be parsed."""


class UntrustedKey(PackageRejected):
    """The package was signed by a key that is not in the trust store."""

    status = BAD_CERTIFICATE_UNTRUSTED


class SignerExpired(PackageRejected):
    """The signer's certificate (or one above it) was not valid at the signing time."""

    status = BAD_CERTIFICATE_TIME_INVALID


class SignerRevoked(PackageRejected):
    """A CRL in the trust store lists the signer's certificate (or one above it)."""

    status = BAD_CERTIFICATE_REVOKED


class ApprovalMissing(PackageRejected):
    """Approval is required, and no valid approval signature chains to the approval trust store."""

    status = BAD_CERTIFICATE_UNTRUSTED


class FileMismatch(PackageRejected):
    """A file is missing, extra, or its size or SHA-256 differs from the manifest."""


class ModelLoadFailed(PackageRejected):
    """onnxruntime cannot load the model file."""

    status = BAD_NOT_SUPPORTED


class InterfaceMismatch(PackageRejected):
    """The model's inputs or outputs differ from what the manifest declares."""

    status = BAD_CONFIGURATION_ERROR


class SampleMismatch(PackageRejected):
    """The model does not reproduce the sample outputs recorded in the manifest."""

    status = BAD_CONFIGURATION_ERROR


# --- cloud sources ----------------------------------------------------------------------------


class SourceError(ModelLineError):
    """A cloud source (S3, SageMaker Model Registry) refused or failed a request."""

    status = BAD_COMMUNICATION_ERROR
    exit_code = 5


class UpdateFailed(ModelLineError):
    """A device refused or failed a software update; the message is its UpdateStatus or reason."""

    exit_code = 6


class Unreachable(ModelLineError):
    """An OPC UA server or edge device cannot be reached (nothing answers, or it refuses the connection)."""

    status = BAD_COMMUNICATION_ERROR
    exit_code = 7


class ConnectionLost(Unreachable):
    """The connection to a device was lost during a step; the message names the step and the cause."""

    status = BAD_CONNECTION_CLOSED


class DiskFull(UpdateFailed):
    """Not enough free disk space for a transfer or an install; the message says how much is needed and free.

    OPC UA has no StatusCode for a full disk: Bad_OutOfMemory ("not enough memory to complete the
    operation") is the nearest, and no other refusal of a transfer uses it, so a client can tell it apart.
    """

    status = BAD_OUT_OF_MEMORY


class CredentialsMissing(SourceError):
    """No AWS credentials were found."""

    status = BAD_USER_ACCESS_DENIED


# --- model monitor ----------------------------------------------------------------------------


class QueueMismatch(InvalidState):
    """An acknowledgement names another life of the record queue (its QueueId changed): fetch again from 0."""
