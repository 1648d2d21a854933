"""Downloading one S3 object, streamed to a file with progress."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sdk.errors import NotFound, UsageError
from sdk.sources.aws import aws_errors

Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None)."""

_CHUNK = 1 << 20


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key') from 's3://bucket/key'."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise UsageError(f"{uri!r} is not an S3 object URI like s3://bucket/path/model.tar.gz")
    return parsed.netloc, parsed.path.lstrip("/")


def download(client: Any, uri: str, dest: Path, progress: Progress | None = None) -> int:
    """Stream ``uri`` into ``dest``; returns the byte count."""
    bucket, key = parse_s3_uri(uri)
    with aws_errors(f"downloading {uri}"):
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as exc:  # head_bucket answers a bare 404: say which part is missing
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in {"404", "NoSuchBucket"}:
                raise NotFound(f"S3 bucket {bucket!r} does not exist") from None
            raise
        try:
            response = client.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in {"404", "NoSuchKey"}:
                raise NotFound(f"{uri} does not exist") from None
            raise
        total = response.get("ContentLength")
        body = response["Body"]
        done = 0
        with open(dest, "wb") as fh:
            while chunk := body.read(_CHUNK):
                fh.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    return done
