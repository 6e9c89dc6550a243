"""Image-folder datasets go through timm's create_dataset/create_transform and train like in-memory ones."""

import numpy as np
from PIL import Image

from attnzoo.train import load_recipe, train
from train_helpers import ROOT


def _image_folder(root, classes=("cat", "dog"), per_class=4):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) // (c + 1)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_folder_recipe_trains_and_counts_classes(tmp_path):
    root = _image_folder(tmp_path / "images")
    recipe_file = tmp_path / "folder.yaml"
    recipe_file.write_text(
        f"defaults: {ROOT / 'recipes' / 'fashion_mnist' / '_base.yaml'}\n"
        f"model: {{name: cnn3}}\n"
        f"data: {{dataset: folder, root: {root}, train_split: train, val_split: val, img_size: 28, workers: 0}}\n"
        f"aug: {{crop_padding: 0, hflip: 0.5, scale: [0.5, 1.0]}}\n"
        f"output: {tmp_path / 'runs'}\nepochs: 1\nbatch_size: 4\nthreads: 1\n"
    )
    summary = train(*load_recipe(recipe_file))
    assert summary["status"] == "complete"
    assert summary["num_classes"] == 2 and summary["model"]["in_chans"] == 3 and summary["img_size"] == 28
    assert 0 <= summary["top1"] <= 100
