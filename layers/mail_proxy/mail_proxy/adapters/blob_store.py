"""S3 adapter: the deployment's attachment bucket (large payloads, large files) and tenant-allowed buckets."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from mail_proxy.adapters.aws_clients import client


class BlobMissing(Exception):
    """The object does not exist (or we may not read it): retrying will not help."""


class BlobUnavailable(Exception):
    """S3 failed or throttled: it may work later."""


class BlobTooLarge(Exception):
    pass


PRESIGNED_URL_MAX_SECONDS = 7 * 24 * 3600  # S3 refuses a presigned (SigV4) URL valid for longer
_MISSING = {"NoSuchKey", "404", "NoSuchBucket", "AccessDenied", "403"}


class BlobStore:
    def __init__(self, bucket: str | None) -> None:
        self.bucket = bucket

    @property
    def configured(self) -> bool:
        return bool(self.bucket)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if not self.bucket:
            raise BlobUnavailable("no attachment bucket configured (ATTACHMENT_BUCKET)")
        try:
            client("s3").put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                    ServerSideEncryption="AES256")
        except ClientError as exc:
            raise BlobUnavailable(f"S3 put failed: {exc.response['Error']['Code']}") from exc

    def get(self, key: str, *, bucket: str | None = None, max_bytes: int) -> bytes:
        target = bucket or self.bucket
        if not target:
            raise BlobMissing("no bucket configured")
        try:
            obj: dict[str, Any] = client("s3").get_object(Bucket=target, Key=key)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in _MISSING:
                raise BlobMissing(f"s3://{target}/{key}: {code}") from exc
            raise BlobUnavailable(f"s3://{target}/{key}: {code}") from exc
        if int(obj.get("ContentLength") or 0) > max_bytes:
            raise BlobTooLarge(f"s3://{target}/{key} is larger than {max_bytes} bytes")
        data: bytes = obj["Body"].read(max_bytes + 1)
        if len(data) > max_bytes:
            raise BlobTooLarge(f"s3://{target}/{key} is larger than {max_bytes} bytes")
        return data

    def exists(self, key: str) -> bool:
        """Whether the object is there (a deleted message's file is not)."""
        if not self.bucket:
            return False
        try:
            client("s3").head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in _MISSING or code == "NotFound":
                return False
            raise BlobUnavailable(f"s3://{self.bucket}/{key}: {code}") from exc
        return True

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` in the deployment's bucket."""
        if not self.bucket:
            return []
        keys: list[str] = []
        try:
            for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        except ClientError as exc:
            raise BlobUnavailable(f"S3 list failed: {exc.response['Error']['Code']}") from exc
        return keys

    def delete(self, keys: list[str]) -> None:
        """Delete objects of the deployment's bucket (a missing one is fine), up to 1,000 per request."""
        if not self.bucket:
            return
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 1000):
            chunk = [{"Key": k} for k in unique[i : i + 1000]]
            try:
                resp = client("s3").delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
            except ClientError as exc:
                raise BlobUnavailable(f"S3 delete failed: {exc.response['Error']['Code']}") from exc
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise BlobUnavailable(f"S3 delete failed for {len(resp['Errors'])} objects: {first.get('Code')}")

    def presigned_get(self, key: str, expires_seconds: int, filename: str | None = None) -> str:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url: str = client("s3").generate_presigned_url("get_object", Params=params, ExpiresIn=expires_seconds)
        return url
