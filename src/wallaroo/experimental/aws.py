"""A boto3 client for connector programs (the ``kinesis`` and ``s3`` extras).

Nothing here imports boto3: the program imports it and passes the module in.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["aws_client"]


def aws_client(
    boto3: Any,
    service: str,
    region: str | None,
    endpoint_url: str | None,
    *,
    read_timeout: float,
    max_pool_connections: int,
    path_style: bool = False,
) -> Any:
    """A client of ``service`` with short timeouts (connect 5 s, ``read_timeout``, two
    attempts): a program retries outages itself, with a log line.

    Args:
        boto3: the ``boto3`` module.
        service: ``"kinesis"``, ``"s3"``, ...
        region: the AWS region; None: boto3's (``AWS_DEFAULT_REGION``, the config files).
        endpoint_url: a compatible endpoint instead of AWS's, or None.
        read_timeout: seconds a response may take.
        max_pool_connections: HTTP connections kept (one per thread that calls it at once).
        path_style: S3 path-style addressing (for an ``endpoint_url`` such as moto's).

    Raises:
        ValueError: no region is given or configured.
    """
    config = importlib.import_module("botocore.config").Config(
        connect_timeout=5, read_timeout=read_timeout, max_pool_connections=max_pool_connections,
        retries={"mode": "standard", "max_attempts": 2},
        s3={"addressing_style": "path"} if path_style else None,
    )  # fmt: skip
    no_region = importlib.import_module("botocore.exceptions").NoRegionError
    try:
        return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=config)
    except no_region:
        raise ValueError(
            "no AWS region: give --<connector>-region or set AWS_DEFAULT_REGION"
        ) from None
