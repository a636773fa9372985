"""Tiny datasets in tonic's exact on-disk layouts, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from exodus_lightning.data.fabricate import write_dvs_gesture, write_nmnist, write_shd, write_ssc


@pytest.fixture(scope="session")
def nmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 10 digits x 3 train, x 1 test: 30 / 10 samples.
    return write_nmnist(tmp_path_factory.mktemp("nmnist"), num_train_per_class=3)


@pytest.fixture(scope="session")
def dvs_gesture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 2 train users x 2 lightings x 11 gestures = 44 train, 22 test samples.
    return write_dvs_gesture(tmp_path_factory.mktemp("dvs"), num_events=300)


@pytest.fixture(scope="session")
def shd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shd(tmp_path_factory.mktemp("shd"), num_train=40, num_test=20)


@pytest.fixture(scope="session")
def ssc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ssc(tmp_path_factory.mktemp("ssc"), num_train=70, num_valid=35, num_test=35)
