"""The Fashion-MNIST IDX reader, on small IDX files written by the test."""

import gzip

import numpy as np
import pytest
import torch

from attnzoo.data import load_fashion_mnist, read_idx
from attnzoo.errors import DataFileError, DatasetNotFoundError
from train_helpers import make_tiny_fashion_mnist, write_idx


def test_reads_images_and_labels_with_header_shape(tmp_path):
    root = make_tiny_fashion_mnist(tmp_path, train=20, test=8)
    images, labels = load_fashion_mnist("trainval", root)  # all official training images
    assert images.shape == (20, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (20,) and labels.dtype == torch.int64
    assert set(labels.tolist()) <= set(range(10))
    # the fake images carry their label as a bright band at row 2c+4
    assert all(images[i, 2 * c + 4].min() == 230 for i, c in enumerate(labels.tolist()))
    assert load_fashion_mnist("test", root)[0].shape == (8, 28, 28)


def test_read_idx_round_trips_exact_bytes(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_truncated_file_is_reported(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros((4, 28, 28), dtype=np.uint8))
    data = gzip.open(tmp_path / "a.gz").read()
    with gzip.open(tmp_path / "a.gz", "wb") as f:
        f.write(data[:-10])
    with pytest.raises(DataFileError, match="truncated"):
        read_idx(tmp_path / "a.gz")


def test_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)
