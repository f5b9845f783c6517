"""A real S3-compatible HTTP server on 127.0.0.1 for the file store's tests: moto's server mode
(ThreadedMotoServer, a werkzeug server in a thread of the test process), started once per
session on a free port. Registered for every test by tests/conftest.py (``pytest_plugins``)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION = "lamplighter-test", "lamplighter-test-secret", "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self):
        """A plain boto3 client on the server, for checking and tampering behind a store's back."""
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint, region_name=REGION,
                                              aws_access_key_id=ACCESS_KEY_ID,
                                              aws_secret_access_key=SECRET_ACCESS_KEY)

    def env(self, url: str) -> dict[str, str]:
        """The settings that point Lamplighter's file store at ``url`` on this server."""
        return {"LAMPLIGHTER_FILES_URL": url, "LAMPLIGHTER_FILES_S3_ENDPOINT": self.endpoint,
                "LAMPLIGHTER_FILES_S3_REGION": REGION, "LAMPLIGHTER_FILES_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "LAMPLIGHTER_FILES_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A new, empty bucket on the test server."""
    name = f"lamplighter-{uuid.uuid4().hex[:16]}"
    s3_server.client().create_bucket(Bucket=name)
    return name
