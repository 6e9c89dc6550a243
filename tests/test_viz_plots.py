"""Figures, test-image selection and the ``attnzoo viz`` command."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from matplotlib.image import imread

import attnzoo
from attnzoo_cli import main
from attnzoo.models import save_weights
from attnzoo.viz import capture, excitation_figure, image_figure, save_figure
from attnzoo.viz.report import run_input
from attnzoo.viz.samples import FASHION_MNIST_CLASSES, balanced_indices, prepare

N_FAKE = 30


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion_mnist(tmp_path, monkeypatch) -> None:
    """A 30-image test split in IDX format (random pixels, labels 0..9 three times), read instead of the real one."""
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (N_FAKE, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(N_FAKE) % 10)
    monkeypatch.setenv("ATTNZOO_FASHION_MNIST", str(tmp_path))


def assert_png_not_blank(path) -> None:
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].var() > 0


def cnn3(attn: str = "cbam"):
    torch.manual_seed(0)
    return attnzoo.build_model(f"cnn3_{attn}", num_classes=10, in_chans=1).eval()


def test_balanced_indices_take_the_classes_in_turn():
    labels = torch.tensor([3, 3, 1, 1, 0, 3])
    assert balanced_indices(labels, 5).tolist() == [4, 2, 0, 3, 1]


def test_prepare_normalises_and_scales_to_the_models_input():
    x = prepare(torch.full((2, 28, 28), 255, dtype=torch.uint8), in_chans=3, img_size=32, resize="bilinear")
    assert x.shape == (2, 3, 32, 32)
    assert x[0, 0, 0, 0].item() == pytest.approx((1 - 0.2860) / 0.3530)


def test_prepare_pads_on_black_as_training_does():
    x = prepare(torch.full((1, 28, 28), 255, dtype=torch.uint8), img_size=32, resize="pad")
    assert x.shape == (1, 1, 32, 32)
    assert x[0, 0, 1, 1].item() == pytest.approx(-0.2860 / 0.3530)  # padding
    assert x[0, 0, 2:30, 2:30].eq(x[0, 0, 16, 16]).all() and x[0, 0, 16, 16] > 2


def test_image_figure_is_written_and_not_blank(tmp_path):
    model = cnn3("cbam")
    x = torch.randn(2, 1, 28, 28)
    captured, logits = capture(model, x, ["stages.0", "stages.2"])
    fig = image_figure(captured, x, 1, channels=4, title="cnn3_cbam - untrained", label=3,
                       prediction=int(logits[1].argmax()), class_names=FASHION_MNIST_CLASSES)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("input\nlabel: Dress")
    overlays = [t for t in titles if t.startswith("CBAM")]
    assert overlays == [f"CBAM spatial gate, stage {s}\n{n}x{n} map" for s, n in ((1, 28), (2, 14), (3, 7))]
    rows = [t for t in titles if t.startswith("stages.")]
    assert rows == ["stages.0 (32, 14, 14)\nch 0", "stages.2 (128, 3, 3)\nch 0"]
    assert_png_not_blank(save_figure(fig, tmp_path / "deep" / "image.png"))


def test_excitation_figure_shows_the_mean_gate_and_a_class_deviation_map_per_stage(tmp_path):
    model = cnn3("se")
    captured, _ = capture(model, torch.randn(20, 1, 28, 28), keys={"channel"})
    fig = excitation_figure(captured, torch.arange(20) % 4, class_names=FASHION_MNIST_CLASSES)
    tops = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in tops] == [f"SE channel gate, stage {s}, {c} channels"
                                               for s, c in ((1, 32), (2, 64), (3, 128))]
    maps = [ax.images[0] for ax in fig.axes if ax.images]
    assert [m.get_array().shape for m in maps] == [(4, 32), (4, 64), (4, 128)]  # classes x channels
    deviations = np.asarray(maps[0].get_array())
    assert np.isfinite(deviations).all() and np.abs(deviations).max() > 0
    np.testing.assert_allclose(deviations.sum(0), 0, atol=1e-6)  # equal class sizes: deviations cancel
    low, high = maps[0].get_clim()
    assert low == -high and high >= 0.01  # symmetric, and tiny differences stay pale
    heat_axes = next(ax for ax in fig.axes if ax.images)
    assert [t.get_text() for t in heat_axes.get_yticklabels()] == list(FASHION_MNIST_CLASSES[:4])
    assert_png_not_blank(save_figure(fig, tmp_path / "excitation.png"))


def test_one_position_maps_are_explained_not_drawn_as_flat_squares():
    model = attnzoo.build_model("resnet18_cbam", num_classes=10, in_chans=1, zero_init_last=False).eval()
    x = torch.randn(2, 1, 28, 28)  # stage 4 of the standard stem: 1x1
    captured, _ = capture(model, x, ["layer3", "layer4"])
    fig = image_figure(captured, x, 0, channels=4)
    titles = [ax.get_title() for ax in fig.axes]
    assert "CBAM spatial gate, stage 4\n1x1 map" in titles
    stage4 = fig.axes[titles.index("CBAM spatial gate, stage 4\n1x1 map")]
    assert not stage4.images and "single" in stage4.texts[0].get_text()
    layer4 = fig.axes[titles.index("layer4 (512, 1, 1)\nchannel values")]
    assert len(layer4.patches) == 512 and not layer4.images
    assert "layer3 (256, 2, 2)\nch 0" in titles


def test_no_excitation_figure_without_channel_gates():
    model = attnzoo.build_model("resnet18_cbam_spatial", num_classes=10, in_chans=1, small_input=True).eval()
    captured, _ = capture(model, torch.randn(2, 1, 16, 16), keys={"channel"})
    assert excitation_figure(captured, torch.zeros(2)) is None


def test_command_writes_a_figure_per_image_and_the_excitation_plot(fake_fashion_mnist, tmp_path, capsys):
    out = tmp_path / "viz"
    assert main(["viz", "cnn3_cbam", "--images", "3", "--gate-images", "20", "--out", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["excitation.png", "image_00_t-shirt-top.png", "image_01_trouser.png",
                       "image_02_pullover.png"]
    assert capsys.readouterr().out.count(".png") == 4
    for path in out.iterdir():
        assert_png_not_blank(path)


def test_command_loads_a_checkpoint(fake_fashion_mnist, tmp_path):
    checkpoint = tmp_path / "best.safetensors"
    save_weights(cnn3("se"), checkpoint)
    assert main(["viz", "cnn3_se", "--checkpoint", str(checkpoint), "--images", "1", "--gate-images", "10",
                 "--layers", "stages.1.conv", "--out", str(tmp_path / "viz")]) == 0
    assert (tmp_path / "viz" / "excitation.png").is_file()


def test_command_refuses_a_checkpoint_of_another_model(fake_fashion_mnist, tmp_path, capsys):
    checkpoint = tmp_path / "best.safetensors"
    save_weights(cnn3("se"), checkpoint)
    assert main(["viz", "cnn3_cbam", "--checkpoint", str(checkpoint), "--out", str(tmp_path)]) == 2
    assert "holds a cnn3_se model, not cnn3_cbam; pass cnn3_se" in capsys.readouterr().err


def test_command_names_close_layers_for_a_typo(fake_fashion_mnist, tmp_path, capsys):
    assert main(["viz", "cnn3_se", "--layers", "stages.1.cnv", "--out", str(tmp_path)]) == 2
    assert "no layer 'stages.1.cnv'; close names: stages.1.conv" in capsys.readouterr().err


def test_input_size_and_resize_come_from_the_checkpoints_run_recipe(tmp_path):
    (tmp_path / "recipe.yaml").write_text("model:\n  name: cnn3\ndata:\n  img_size: 32\n  resize: pad\n")
    assert run_input(tmp_path / "best.safetensors") == {"img_size": 32, "resize": "pad"}
    assert run_input(tmp_path / "elsewhere" / "best.safetensors") == {}
    assert run_input(None) == {}
