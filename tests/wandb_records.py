"""Read what a W&B run logged back from its offline `.wandb` file (wandb 0.31 has no reader).

File layout: a 7-byte header (b":W&B", magic 0xBEE1 little-endian, version 0), then LevelDB-log
framing: 32 KiB blocks of chunks, each chunk a 7-byte header (CRC32C: 4 bytes, length: 2 bytes
little-endian, type: 1 byte = FULL 1 | FIRST 2 | MIDDLE 3 | LAST 4) and its payload; a block's
last < 7 bytes are zero padding. Reassembled payloads are `wandb_internal_pb2.Record` messages.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK_SIZE = 32 * 1024
FILE_HEADER_SIZE = 7
CHUNK_HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (header {data[:4]!r})")
    records, pending, offset = [], b"", FILE_HEADER_SIZE
    while offset + CHUNK_HEADER_SIZE <= len(data):
        left_in_block = BLOCK_SIZE - offset % BLOCK_SIZE
        if left_in_block < CHUNK_HEADER_SIZE:
            offset += left_in_block  # padding at the end of a block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[offset : offset + CHUNK_HEADER_SIZE])
        payload = data[offset + CHUNK_HEADER_SIZE : offset + CHUNK_HEADER_SIZE + length]
        offset += CHUNK_HEADER_SIZE + length
        if kind == 0 and length == 0:
            continue
        if kind in (FULL, FIRST):
            pending = payload
        else:
            pending += payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def logged_history(path: str | Path) -> list[dict]:
    """Every wandb.log() call of the run, as {key: value} (values JSON-decoded)."""
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json)
         for item in record.history.item}
        for record in read_records(path)
        if record.WhichOneof("record_type") == "history"
    ]


def logged_config(path: str | Path) -> dict:
    """The run's config: the union of all config updates, {key: value}."""
    config = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return config


def finished_run_file(run_dir: str | Path, timeout: float = 60.0) -> Path:
    """The run's .wandb file once it holds the run's exit record.

    wandb's service writes the file in the background: right after run.finish() it may still
    hold only its header.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        files = list(Path(run_dir).glob("run-*.wandb"))
        if files and any(record.WhichOneof("record_type") == "exit"
                         for record in read_records(files[0])):
            return files[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no finished W&B run file in {run_dir} after {timeout} s")
        time.sleep(0.1)


def child_environment(**variables: str) -> dict[str, str]:
    """os.environ plus `variables` for a child process that runs its own W&B service.

    wandb exports WANDB_SERVICE once a run started in this (test) process; a child that inherits
    it hands its run to this process's service, which writes the run's file late.
    """
    env = {name: value for name, value in os.environ.items() if name != "WANDB_SERVICE"}
    env.update(variables)
    return env
