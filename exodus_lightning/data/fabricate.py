"""Write small fake datasets in the exact on-disk layouts tonic 1.7 reads (no network needed).

Used by the tests, the CLI tests and the benchmarks. Each writer creates the *extracted* layout
only (not tonic's archive files), so load the result with `download=False`:

    root = write_nmnist(tmp_path, num_train_per_class=3, num_test_per_class=1)
    NMNISTDataModule(data_dir=root, download=False)

Samples carry a weak class signal (events of class c cluster around a class-specific position
or channel), so a model trained on fabricated data can beat chance; labels are balanced.

From a shell, to try the dataset commands without the data (every class, a few samples each):

    python -m exodus_lightning.data.fabricate shd data-fake
    exodus-lightning fit --config configs/shd.yaml --data.init_args.data_dir data-fake \
        --data.init_args.download false --trainer.max_epochs 1
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

NMNIST_SENSOR = (34, 34)
DVS_GESTURE_SENSOR = (128, 128)
DVS_GESTURE_NUM_CLASSES = 11
HEIDELBERG_NUM_CHANNELS = 700
SHD_NUM_CLASSES = 20
SSC_NUM_CLASSES = 35


def encode_nmnist_events(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> bytes:
    """N-MNIST's binary event format, 5 bytes per event.

    byte 0 = x, byte 1 = y, byte 2 = (p << 7) | t[22:16], byte 3 = t[15:8], byte 4 = t[7:0];
    t in microseconds < 2**23, y != 240 (240 marks a timestamp overflow event).
    """
    x, y, t, p = (np.asarray(a, dtype=np.int64) for a in (x, y, t, p))
    if len(t) and (t.min() < 0 or t.max() >= 2**23):
        raise ValueError("N-MNIST timestamps must lie in [0, 2**23) microseconds")
    raw = np.empty((len(t), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    return raw.tobytes()


def _clustered_positions(
    rng: np.random.Generator, label: int, num_classes: int, size: int, num_events: int
) -> np.ndarray:
    """Positions in [0, size): half near a class-specific centre, half uniform noise."""
    centre = (label + 0.5) * size / num_classes
    near = rng.normal(centre, size / (2 * num_classes), num_events)
    uniform = rng.uniform(0, size, num_events)
    positions = np.where(rng.random(num_events) < 0.5, near, uniform)
    return np.clip(positions, 0, size - 1).astype(np.int64)


def _sorted_times(rng: np.random.Generator, num_events: int, duration: float) -> np.ndarray:
    return np.sort(rng.uniform(0, duration, num_events))


def write_nmnist(
    root: str | Path,
    num_train_per_class: int = 2,
    num_test_per_class: int = 1,
    num_events: int = 200,
    duration_us: int = 300_000,
    seed: int = 0,
) -> Path:
    """Write `root/NMNIST/{Train,Test}/<digit>/<index>.bin` (10 digits) and return `root`.

    Real N-MNIST has ~4000 events per 300 ms sample, 60000 train and 10000 test samples.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for folder, per_class in (("Train", num_train_per_class), ("Test", num_test_per_class)):
        for digit in range(10):
            digit_dir = root / "NMNIST" / folder / str(digit)
            digit_dir.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                x = _clustered_positions(rng, digit, 10, NMNIST_SENSOR[0], num_events)
                y = rng.integers(0, NMNIST_SENSOR[1], num_events)
                t = _sorted_times(rng, num_events, duration_us).astype(np.int64)
                p = rng.integers(0, 2, num_events)
                (digit_dir / f"{index:05d}.bin").write_bytes(encode_nmnist_events(x, y, t, p))
    return root


def write_dvs_gesture(
    root: str | Path,
    num_train_users: int = 2,
    num_test_users: int = 1,
    lightings: Sequence[str] = ("fluorescent", "led"),
    num_events: int = 500,
    duration_ms: int = 2000,
    start_ms_max: int = 1000,
    seed: int = 0,
) -> Path:
    """Write `root/DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy`; return root.

    Each user/lighting folder holds one recording per gesture (11 labels, as in the real data), so
    train has num_train_users * len(lightings) * 11 samples. A recording is an int64 array
    (N, 4) of x, y, p, t with t in *milliseconds* starting at a random offset in
    [0, start_ms_max); real recordings last ~6 s and hold ~10^5 - 10^6 events.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    users = {
        "ibmGestureTrain": range(1, num_train_users + 1),
        "ibmGestureTest": range(num_train_users + 1, num_train_users + num_test_users + 1),
    }
    for folder, user_ids in users.items():
        for user in user_ids:
            for lighting in lightings:
                sample_dir = root / "DVSGesture" / folder / f"user{user:02d}_{lighting}"
                sample_dir.mkdir(parents=True, exist_ok=True)
                for label in range(DVS_GESTURE_NUM_CLASSES):
                    events = np.empty((num_events, 4), dtype=np.int64)
                    events[:, 0] = _clustered_positions(
                        rng, label, DVS_GESTURE_NUM_CLASSES, DVS_GESTURE_SENSOR[0], num_events
                    )
                    events[:, 1] = rng.integers(0, DVS_GESTURE_SENSOR[1], num_events)
                    events[:, 2] = rng.integers(0, 2, num_events)
                    start = rng.integers(0, max(start_ms_max, 1))
                    events[:, 3] = start + _sorted_times(rng, num_events, duration_ms)
                    np.save(sample_dir / f"{label}.npy", events)
    return root


def write_heidelberg_h5(
    path: str | Path,
    num_samples: int,
    num_classes: int,
    spikes_per_sample: int = 300,
    duration_s: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write one SHD/SSC-style HDF5 file and return its path.

    Datasets: spikes/times (vlen float16, seconds, sorted), spikes/units (vlen uint16 in [0, 700)),
    labels (uint16, balanced), extra/keys (class names, bytes), extra/speaker (uint16).
    Real SHD samples hold ~2000-15000 spikes over up to ~1.4 s. Labels cycle through the
    classes, so num_samples >= num_classes puts every class in the file, as the DataModules
    require of an official split.
    """
    if num_samples < num_classes:
        raise ValueError(
            f"num_samples={num_samples} is fewer than num_classes={num_classes}: every class "
            f"needs a sample (the DataModules refuse a split that lacks classes); write at least "
            f"{num_classes}"
        )
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.arange(num_samples, dtype=np.uint16) % num_classes
    with h5py.File(path, "w") as file:
        times = file.create_dataset(
            "spikes/times", (num_samples,), dtype=h5py.vlen_dtype(np.float16)
        )
        units = file.create_dataset(
            "spikes/units", (num_samples,), dtype=h5py.vlen_dtype(np.uint16)
        )
        for index, label in enumerate(labels):
            times[index] = _sorted_times(rng, spikes_per_sample, duration_s).astype(np.float16)
            units[index] = _clustered_positions(
                rng, int(label), num_classes, HEIDELBERG_NUM_CHANNELS, spikes_per_sample
            ).astype(np.uint16)
        file.create_dataset("labels", data=labels)
        file.create_dataset("extra/keys", data=[f"class-{c}".encode() for c in range(num_classes)])
        file.create_dataset("extra/speaker", data=rng.integers(0, 10, num_samples, dtype=np.uint16))
    return path


def write_shd(
    root: str | Path,
    num_train: int = 40,
    num_test: int = 20,
    spikes_per_sample: int = 300,
    seed: int = 0,
) -> Path:
    """Write `root/SHD/shd_{train,test}.h5` (20 classes) and return `root`."""
    root = Path(root)
    for offset, (split, count) in enumerate((("train", num_train), ("test", num_test))):
        write_heidelberg_h5(
            root / "SHD" / f"shd_{split}.h5",
            count,
            SHD_NUM_CLASSES,
            spikes_per_sample,
            seed=seed + offset,
        )
    return root


def write_ssc(
    root: str | Path,
    num_train: int = 70,
    num_valid: int = 35,
    num_test: int = 35,
    spikes_per_sample: int = 300,
    seed: int = 0,
) -> Path:
    """Write `root/SSC/ssc_{train,valid,test}.h5` (35 classes) and return `root`."""
    root = Path(root)
    splits = (("train", num_train), ("valid", num_valid), ("test", num_test))
    for offset, (split, count) in enumerate(splits):
        write_heidelberg_h5(
            root / "SSC" / f"ssc_{split}.h5",
            count,
            SSC_NUM_CLASSES,
            spikes_per_sample,
            seed=seed + offset,
        )
    return root


# Command-line name -> (writer, config), each writer with its default (tiny) sizes.
WRITERS = {
    "nmnist": (write_nmnist, "configs/nmnist.yaml"),
    "dvs_gesture": (write_dvs_gesture, "configs/dvs_gesture.yaml"),
    "shd": (write_shd, "configs/shd.yaml"),
    "ssc": (write_ssc, "configs/ssc.yaml"),
}


def config_to_show(config: str) -> str:
    """`config` (a path in the checkout) as the user can type it from the current folder: as
    is inside the checkout, else the checkout's absolute path (an editable install's)."""
    checkout = Path(__file__).resolve().parents[2] / config
    if Path(config).is_file() or not checkout.is_file():
        return config
    return str(checkout)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m exodus_lightning.data.fabricate DATASET... FOLDER [--seed N]`: write tiny
    fake copies into FOLDER and print how to train on them."""
    parser = argparse.ArgumentParser(
        prog="python -m exodus_lightning.data.fabricate",
        description="Write tiny fake copies of recorded datasets in their real on-disk layouts "
        "(every class, a few samples each), to try the dataset commands without the data.",
    )
    parser.add_argument("datasets", nargs="+", choices=list(WRITERS), metavar="DATASET",
                        help=f"one or more of {', '.join(WRITERS)}")
    parser.add_argument("folder", type=Path, metavar="FOLDER",
                        help="data_dir to write into (e.g. FOLDER/SHD/shd_train.h5)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the fake events (default 0); another seed writes other "
                        "events under the same file names")
    args = parser.parse_args(argv)
    for name in dict.fromkeys(args.datasets):
        writer, config = WRITERS[name]
        writer(args.folder, seed=args.seed)
        print(f"wrote fake {name} into {args.folder}; try it with:\n"
              f"  exodus-lightning fit --config {config_to_show(config)} --data.init_args.data_dir "
              f"{args.folder} --data.init_args.download false --trainer.max_epochs 1")


if __name__ == "__main__":
    main()
