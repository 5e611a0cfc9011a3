"""A real S3-compatible server on 127.0.0.1 for tests: moto's server mode, as s3fs tests itself.

The server is a thread of the test process answering HTTP on a free port; clients reach
it only through the standard AWS settings (credentials and ``AWS_ENDPOINT_URL`` in the
environment), like any S3-compatible service.  Needs the dev extra (``s3fs``,
``moto[server]``): the helpers skip the calling test when either is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ACCESS_KEY = "vidsvd-test-key"
SECRET_KEY = "vidsvd-test-secret"

# Variables that could point a test at real AWS or other credentials; removed from
# every environment these helpers build.
_FOREIGN_AWS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "FSSPEC_S3",
    "FSSPEC_S3_ENDPOINT_URL",
)


def require_s3_tools() -> None:
    """Skip the calling test unless s3fs and moto's server are importable (the dev extra)."""
    pytest.importorskip("s3fs", reason="s3fs is not installed: pip install -e '.[dev]'")
    pytest.importorskip("moto.server", reason="moto[server] is not installed: pip install -e '.[dev]'")


@dataclass
class S3Server:
    endpoint: str
    home: Path

    def env(self, *, credentials: bool = True, endpoint: str | None = None) -> dict[str, str]:
        """The process environment of a client of this server (nothing from ~/.aws)."""
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_AWS}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.pop(key, None)
        env.update(
            AWS_ENDPOINT_URL=endpoint or self.endpoint,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",  # no instance-metadata credentials, even on a cloud VM
            AWS_SHARED_CREDENTIALS_FILE=str(self.home / "credentials"),
            AWS_CONFIG_FILE=str(self.home / "config"),
            PYTHONPATH=str(REPO),
        )
        if credentials:
            env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        return env

    def use_in_process(self, monkeypatch: pytest.MonkeyPatch, **options: object) -> None:
        """Give this process (and clusters it starts later) the environment of :meth:`env`."""
        import s3fs

        wanted = self.env(**options)  # type: ignore[arg-type]
        for key in (*_FOREIGN_AWS, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if key not in wanted:
                monkeypatch.delenv(key, raising=False)
        for key, value in wanted.items():
            if key.startswith("AWS_"):
                monkeypatch.setenv(key, value)
        # fsspec caches filesystems by their arguments, not by the environment they read
        s3fs.S3FileSystem.clear_instance_cache()

    def create_bucket(self, prefix: str = "vidsvd") -> str:
        import boto3

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=name)
        return name

    @contextlib.contextmanager
    def checking_credentials(self) -> Iterator[None]:
        """Make the server check signatures against its (empty) IAM users while inside."""
        import requests

        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        try:
            yield
        finally:
            requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"inf", timeout=10).raise_for_status()


@contextlib.contextmanager
def running_s3_server(home: Path) -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1 and a free port; stop it on exit."""
    require_s3_tools()
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(endpoint=f"http://{host}:{port}", home=home)
    finally:
        server.stop()


def run_cli_process(*argv: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str, str, float]:
    """Run ``python -m pipelines.cli ARGV`` in a fresh process; return (status, stdout, stderr, seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *argv],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started
