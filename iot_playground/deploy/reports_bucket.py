"""The stage's reports bucket, one definition for every way of making it.

Downloads too large for a Lambda response go there for a few minutes (chalicelib/report_store.py):
the bucket is private (public access blocked, objects owned by the bucket owner, no ACLs),
encrypted at rest (SSE-S3), refuses plain HTTP, and expires every object a day after it was
written. CORS lets a browser follow the API's 303 to a presigned URL: after a cross-origin
redirect the browser sends `Origin: null`, so any origin may read; the presigned signature
is what grants access, and it lasts LINK_SECONDS.

Used by `cfn_template.py`, `tf_template.py` and `tables_admin.py` (`make tables`, `make run`).
"""

from __future__ import annotations

from typing import Any

Reference = Any  # an ARN string, or a template expression that evaluates to one

# Chalice-style logical name, as for the tables.
LOGICAL_NAME = "reports"
EXPIRE_DAYS = 1
LIFECYCLE_RULE_ID = "expire-downloads"

LIFECYCLE_RULES: list[dict[str, Any]] = [
    {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"Days": EXPIRE_DAYS},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": EXPIRE_DAYS},
    }
]
CORS_RULES: list[dict[str, Any]] = [
    {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "AllowedHeaders": ["*"], "MaxAgeSeconds": 3000}
]
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
SSE_ALGORITHM = "AES256"
OBJECT_OWNERSHIP = "BucketOwnerEnforced"


def tls_only_policy(bucket_arn: Reference, objects_arn: Reference) -> dict[str, Any]:
    """The bucket policy: every request over plain HTTP is denied."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyPlainHttp",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, objects_arn],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def bucket_arn(name: str) -> str:
    return f"arn:aws:s3:::{name}"
