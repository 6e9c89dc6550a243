"""Evaluation: exact accuracy and loss on a constructed case, cost fields, and class-count mismatches."""

import math

import numpy as np

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attnzoo.evaluate.evaluate import ClassCountError, evaluate, format_table, measure_accuracy
from attnzoo.flops import MAC_CONVENTION

class RankOracle(nn.Module):
    """Reads a class p from pixel (0, 0) and scores class c with -((c - p) mod 10): p first, p+1 second..."""

    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pred = x[:, 0, 0, 0].long()[:, None]
        classes = torch.arange(self.num_classes)[None, :]
        return -((classes - pred) % self.num_classes).float() + self.anchor


def constructed_loader() -> DataLoader:
    """10 images whose labels rank 0 (six times), 1 (twice), 4 and 7 under RankOracle."""
    ranks = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 4, 7])
    preds = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])
    images = torch.zeros(10, 1, 4, 4)
    images[:, 0, 0, 0] = preds.float()
    return DataLoader(TensorDataset(images, (preds + ranks) % 10), batch_size=3)


def test_top1_top5_and_loss_are_exact_on_a_constructed_case():
    acc = measure_accuracy(RankOracle(), constructed_loader())
    log_partition = math.log(sum(math.exp(-k) for k in range(10)))
    assert acc.images == 10
    assert acc.top1 == 60.0
    assert acc.top5 == 90.0
    assert acc.loss == pytest.approx(log_partition + (0 * 6 + 1 * 2 + 4 + 7) / 10, rel=1e-6)


def test_top5_is_absent_below_five_classes():
    model = nn.Linear(4, 3)
    loader = DataLoader(TensorDataset(torch.zeros(2, 4), torch.tensor([0, 1])), batch_size=2)
    assert measure_accuracy(model, loader).top5 is None


@pytest.fixture
def image_folder(tmp_path):
    """A 3-class folder of 28x28 grey PNGs, two per class."""
    for c in ("boot", "coat", "shirt"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.new("L", (28, 28), color=40 * i).save(tmp_path / c / f"{i}.png")
    return tmp_path


def test_dataset_with_other_class_count_than_head_says_so_and_offers_num_classes(image_folder):
    with pytest.raises(ClassCountError, match=r"has 3 classes but cnn3's head has 10 outputs.*--num-classes 3"):
        evaluate("cnn3", data=str(image_folder), runs=1, batch_size=4)


def test_folder_eval_row_holds_accuracy_and_cost_with_the_convention(image_folder):
    row = evaluate("cnn3", data=str(image_folder), num_classes=3, runs=1, batch_size=4, threads=1)
    assert row["images"] == 6 and 0.0 <= row["top1"] <= 100.0 and row["top5"] is None
    assert row["img_size"] == 28 and row["in_chans"] == 1 and row["threads"] == 1
    assert row["gmacs"] > 0 and row["attn_gmacs"] == 0 and row["params_m"] > 0
    assert row["img_per_s"] > 0 and row["peak_mem_mib"] > 0
    assert row["mac_convention"] == MAC_CONVENTION
    table = format_table([row])
    assert "cnn3" in table and MAC_CONVENTION in table and "1 thread" in table


def test_attention_cost_is_reported_separately():
    row = evaluate("cnn3_cbam", num_classes=10, img_size=28, runs=1, batch_size=2)
    assert 0 < row["attn_gmacs"] < row["gmacs"] and row["top1"] is None


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


class PixelDecoder(nn.Module):
    """Un-normalises the pixel at (row, row) with Fashion-MNIST's mean/std and predicts value / 20 (0-9)."""

    num_classes = 10

    def __init__(self, row: int) -> None:
        super().__init__()
        self.row = row
        self.conv = nn.Conv2d(1, 1, 1)  # gives input_size_of a channel count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = (x[:, 0, self.row, self.row] * 0.3530 + 0.2860) * 255
        return nn.functional.one_hot((value / 20).round().long().clamp(0, 9), self.num_classes).float() + 0 * self.conv.bias


def test_fashion_mnist_eval_pads_and_normalises_like_training(tmp_path, monkeypatch):
    """Four test images whose pixel (0, 0) encodes a class; three labels agree: top-1 is exactly 75%."""
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = [20, 40, 60, 80]  # decodes to classes 1, 2, 3, 4
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 2, 3, 9]))
    monkeypatch.setenv("ATTNZOO_FASHION_MNIST", str(tmp_path))
    monkeypatch.setattr("attnzoo.evaluate.evaluate.load_eval_model", lambda *a, **k: PixelDecoder(row=2))
    row = evaluate("decoder", data="fashion-mnist", img_size=32, runs=1, batch_size=3)  # 28 -> 32: 2 px pad
    assert (row["images"], row["top1"], row["img_size"]) == (4, 75.0, 32)
