"""The ``attnzoo viz`` report: a model and a few Fashion-MNIST test images in, a folder of PNGs out."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from attnzoo.errors import CheckpointError, UsageError
from attnzoo.models import build_model, load_state_dict_strict, model_config, model_from_config, read_weights
from attnzoo.models.io import CONFIG_KEY
from attnzoo.models.registry import FMNIST_MODEL_ARGS, INJECTED
from attnzoo.outputs import check_output_folder, prepare_output_folder
from attnzoo.viz.capture import capture, stage_layer_names
from attnzoo.viz.plots import excitation_figure, image_figure, save_figure
from attnzoo.viz.samples import FASHION_MNIST_CLASSES, balanced_indices, fashion_mnist_test, prepare


def fashion_mnist_model(name: str, checkpoint: str | os.PathLike | None = None) -> nn.Module:
    """``name`` as trained on Fashion-MNIST: rebuilt from ``checkpoint``'s config, or with random weights.

    Without a checkpoint the model gets the input channels, classes and stem the Fashion-MNIST recipes
    use. A checkpoint must hold the model it is given for (its recorded architecture is ``name``).
    """
    if checkpoint is None:
        base = INJECTED.get(name, name)
        return build_model(name, **FMNIST_MODEL_ARGS.get(base, dict(in_chans=1, num_classes=10)))
    state_dict, metadata = read_weights(checkpoint)
    if CONFIG_KEY in metadata:
        config = json.loads(metadata[CONFIG_KEY])
        if config["architecture"] != name:
            raise CheckpointError(
                f"checkpoint {checkpoint} holds a {config['architecture']} model, not {name}; "
                f"pass {config['architecture']} as the model name"
            )
        model = model_from_config(config)
    else:
        model = fashion_mnist_model(name)
    load_state_dict_strict(model, state_dict, str(checkpoint))
    return model


def run_input(checkpoint: str | os.PathLike | None) -> dict[str, Any]:
    """How the checkpoint's run fed images to its model: ``img_size`` and ``resize`` from its recipe.yaml.

    Empty when the checkpoint is not in a run folder; a model sees its training distribution only when
    the test images are padded or scaled the way its training images were.
    """
    recipe = Path(checkpoint).parent / "recipe.yaml" if checkpoint else None
    if recipe is None or not recipe.is_file():
        return {}
    data = (yaml.safe_load(recipe.read_text()) or {}).get("data") or {}
    return {key: data[key] for key in ("img_size", "resize") if data.get(key) is not None}


MAX_INPUT_BYTES = 4 * 2**30  # the prepared test images, held at once: beyond this, a machine may run out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def write_report(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    title: str,
    images: int = 8,
    gate_images: int = 1000,
    layers: Sequence[str] | None = None,
    channels: int = 8,
    img_size: int = 28,
    resize: str = "pad",
    batch_size: int = 100,
) -> list[Path]:
    """Write one figure per test image and one excitation figure per model into ``out``; return the paths.

    ``images`` test images (classes taken in turn) get a figure each with ``channels`` channels of each of
    ``layers`` (default: the model's stages); the per-class channel gates average ``gate_images`` images.
    Test images are brought to ``img_size`` as training did (``resize``: ``pad`` or ``bilinear``).
    """
    check_output_folder(out, "the figures")
    pixels, labels = fashion_mnist_test()
    count, in_chans = min(max(images, gate_images), len(labels)), model_config(model)["in_chans"]
    needed = count * in_chans * img_size**2 * 4  # float32, every image prepared at once
    if needed > MAX_INPUT_BYTES:
        raise UsageError(f"{count} test images at {img_size} px take {needed / 2**30:.1f} GiB at once (at most "
                         f"{MAX_INPUT_BYTES / 2**30:.0f}); lower --img-size, --gate-images or --images")
    out = prepare_output_folder(out, "the figures")
    order = balanced_indices(labels, count)
    inputs = prepare(pixels[order], in_chans, img_size, resize)
    labels = labels[order]
    layers = stage_layer_names(model) if layers is None else list(layers)

    shown, logits = capture(model, inputs[:images], layers, batch_size=batch_size)
    predictions = logits.argmax(1)
    paths = []
    for i in range(len(predictions)):
        fig = image_figure(
            shown, inputs, i, channels=channels, title=title, label=int(labels[i]),
            prediction=int(predictions[i]), class_names=FASHION_MNIST_CLASSES,
        )
        paths.append(save_figure(fig, out / f"image_{i:02d}_{_slug(FASHION_MNIST_CLASSES[labels[i]])}.png"))

    gates, _ = capture(model, inputs[:gate_images], keys={"channel"}, batch_size=batch_size)
    fig = excitation_figure(
        gates, labels[:gate_images], class_names=FASHION_MNIST_CLASSES,
        title=f"{title}\nmean channel gate per class over {min(gate_images, len(inputs))} test images",
    )
    if fig is not None:
        paths.append(save_figure(fig, out / "excitation.png"))
    return paths
