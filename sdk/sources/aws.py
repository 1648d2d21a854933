"""boto3 clients and one translation of AWS failures into one-line ModelLine errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from sdk.errors import CredentialsMissing, NotFound, SourceError, UsageError

_NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "404", "ResourceNotFound", "NotFound"}
_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


@dataclass(frozen=True)
class AwsOptions:
    """Where and how to reach AWS (or an S3/SageMaker-compatible endpoint)."""

    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None

    def client(self, service: str) -> Any:
        """A boto3 client with bounded retries and time-outs."""
        session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
        try:
            return session.client(service, endpoint_url=self.endpoint_url, config=config)
        except NoRegionError:
            raise UsageError("no AWS region set: give --region or set AWS_REGION") from None


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turn boto3 exceptions raised while doing ``what`` into ModelLine errors."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise CredentialsMissing(
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except EndpointConnectionError as exc:
        raise SourceError(f"cannot reach {exc.kwargs.get('endpoint_url', 'the AWS endpoint')} while {what}") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or code
        if code in _NOT_FOUND_CODES or "does not exist" in message or "not found" in message.lower():
            raise NotFound(f"{what}: {message}") from None
        if code in _DENIED_CODES:
            raise SourceError(f"{what}: access denied ({message})") from None
        raise SourceError(f"{what}: {code}: {message}") from None
    except BotoCoreError as exc:
        raise SourceError(f"{what}: {exc}") from None
