"""A prepared copy in S3 object storage (a local moto server): written by `prepare`, read by
every loader with the same batches as a local copy, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from exodus_lightning.data import SHDDataModule
from exodus_lightning.data.errors import PreparedDataError

litdata = pytest.importorskip("litdata")
moto_server = pytest.importorskip("moto.server")  # optional: pip install "moto[server]"
boto3 = pytest.importorskip("boto3")

from exodus_lightning.data.prepare_copy import prepare_copy  # noqa: E402

from .test_streaming import SHD_SETTINGS, assert_same_data, make, set_up  # noqa: E402

BUCKET = "exodus-test"


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """An empty bucket on a moto S3 server of this process; litdata and boto3 find it through
    AWS_ENDPOINT_URL, as they would find a MinIO or other S3-compatible store."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    # litdata's obstore client (chunk transfers) takes https endpoints only, as real object
    # stores are; the local server speaks http.
    from litdata.streaming import downloader

    monkeypatch.setitem(downloader._OBSTORE_CLIENT_OPTIONS, "allow_http", True)
    # litdata caches the chunks it downloads; a folder of this test's own.
    monkeypatch.setenv("LITDATA_CACHE_DIR", str(tmp_path / "litdata-cache"))
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield f"s3://{BUCKET}"
    server.stop()


@pytest.mark.slow
def test_a_copy_in_object_storage_serves_the_batches_of_a_local_one(
    shd_root: Path, tmp_path: Path, s3_bucket: str
) -> None:
    url = f"{s3_bucket}/shd"
    local = tmp_path / "shd"
    prepare_copy(make(SHDDataModule, shd_root, **SHD_SETTINGS), url, num_workers=1,
                 progress=False)
    prepare_copy(make(SHDDataModule, shd_root, **SHD_SETTINGS), str(local), progress=False)
    keys = {item["Key"] for item in boto3.client("s3").list_objects_v2(
        Bucket=BUCKET, Prefix="shd/")["Contents"]}
    assert "shd/manifest.json" in keys
    assert {f"shd/{part}/index.json" for part in ("train", "val", "test")} <= keys
    remote = make(SHDDataModule, shd_root, **SHD_SETTINGS, streaming=url)
    local_copy = make(SHDDataModule, shd_root, **SHD_SETTINGS, streaming=local)
    set_up(remote, local_copy)
    assert_same_data(local_copy, remote)
    with pytest.raises(PreparedDataError, match="already holds a prepared copy"):
        prepare_copy(make(SHDDataModule, shd_root, **SHD_SETTINGS), url, num_workers=1,
                     progress=False)


def test_an_object_store_path_without_a_copy_is_refused(shd_root: Path, s3_bucket: str) -> None:
    reader = make(SHDDataModule, shd_root, streaming=f"{s3_bucket}/nothing-here")
    with pytest.raises(PreparedDataError, match="not a prepared dataset.*exodus-lightning prepare"):
        reader.prepare_data()


def test_a_scheme_litdata_does_not_store_in_is_named(shd_root: Path) -> None:
    reader = make(SHDDataModule, shd_root, streaming="ftp://example.org/shd")
    with pytest.raises(PreparedDataError, match="s3://, gs:// or r2://"):
        reader.prepare_data()
