"""A real S3-compatible server on loopback for the tests: moto's standalone server (it speaks the S3 HTTP
API; nothing in the client is mocked), started in a subprocess on a free port. Clients find it through
``AWS_ENDPOINT_URL`` and dummy credentials, the standard variables every AWS library reads."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

SECRET = "canary-secret-7f3a9c1e-do-not-print"  # the secret key the server accepts (any value works with moto)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server():
    """Yield the environment (a dict of variables) that points S3 clients at a fresh server."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        yield {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def environment(variables: dict):
    """Set ``variables`` in this process for the block (the store's library reads them here). fsspec keeps
    one S3 filesystem per set of options in a process: it is dropped on the way in and out, so a test
    module's server is never reached through a client made for another's."""
    import s3fs as lib

    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    lib.S3FileSystem.clear_instance_cache()
    try:
        yield
    finally:
        lib.S3FileSystem.clear_instance_cache()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def s3fs():
    """A fresh s3fs filesystem (no instance cache: each test's server is new)."""
    import s3fs as lib

    return lib.S3FileSystem(skip_instance_cache=True)


def upload(folder: Path, url: str) -> list[str]:
    """Upload every file under ``folder`` to the prefix ``url`` (s3://bucket/prefix); the keys written."""
    fs = s3fs()
    bucket = url[len("s3://"):].split("/", 1)[0]
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{url.rstrip('/')}/{path.relative_to(folder).as_posix()}"
        fs.put_file(str(path), key)
        keys.append(key)
    return keys
