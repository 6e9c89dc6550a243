"""The model card of converted weights: where they came from, and what their authors published about them.

A converted file has no attnzoo run behind it, so the card carries provenance instead of results: the
source code base and licence, the converted file's name and sha256, and the accuracy the source's authors
published for their released checkpoint, quoted with its citation and marked as not measured by attnzoo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from attnzoo.convert.registry import PublishedResult, Source


@dataclass(frozen=True)
class Provenance:
    """The converted file: its name (never its local path) and content hash."""

    file_name: str
    sha256: str


def _published_lines(results: tuple[PublishedResult, ...]) -> list[str]:
    if not results:
        return ["The source publishes no accuracy for this architecture.", ""]
    lines = ["| released checkpoint | top-1 | top-5 | published in |", "|---|---|---|---|"]
    for r in results:
        top5 = f"{r.top5:.2f}" if r.top5 is not None else "-"
        lines.append(f"| {r.checkpoint} | {r.top1:.2f} | {top5} | {r.citation} |")
    return lines + [
        "",
        "attnzoo has not evaluated these weights: the figures are the source authors' own, for their "
        "released file, and apply to this conversion only if the converted file is that release (its name "
        "and sha256 are above).",
        "",
    ]


def render_convert_card(
    source: Source,
    architecture: str,
    provenance: Provenance,
    config: dict[str, Any],
    name: str,
    loading: list[str],
) -> ModelCard:
    """README.md for weights converted from ``source`` into ``architecture`` (config.json already written).

    ``loading`` lists the timm calls (with ``folder`` standing for this folder) that were checked at
    conversion to load the files back with the converted model's logits.
    """
    num_classes = config["num_classes"]
    cfg = config["pretrained_cfg"]
    stock = config["architecture"] != architecture
    lines = [
        f"# {name}",
        "",
        f"attnzoo's `{architecture}` ({num_classes} classes) with weights converted by "
        f"`attnzoo convert --from {source.name}` from a checkpoint of {source.title}. The mapping is exact: "
        "attnzoo's tests check equal logits against a re-implementation of the source's model code.",
        "",
        "## Provenance",
        "",
        "| | |",
        "|---|---|",
        f"| Source code | {source.title}, {source.repo_url} |",
        f"| Source model | `{source.architectures[architecture]}` |",
        f"| Source file | `{provenance.file_name}` |",
        f"| sha256 | `{provenance.sha256}` |",
        f"| Converter | `attnzoo convert --from {source.name} --arch {architecture}` |",
        f"| Licence | {source.license} (the source repository's licence; it names no other for the weights) |",
        f"| Preprocessing | {'x'.join(map(str, cfg['input_size']))}, crop_pct {cfg.get('crop_pct')}, "
        f"{cfg.get('interpolation')}, mean {tuple(cfg['mean'])}, std {tuple(cfg['std'])} |",
        "",
        "## Published accuracy (ImageNet-1k, quoted from the source, not measured by attnzoo)",
        "",
        *(_published_lines(tuple(source.published.get(architecture, ()))) if num_classes == 1000 else [
            f"The source's figures are for 1000-class ImageNet checkpoints; this one has {num_classes} classes, "
            "so none of them applies.", ""]),
        "## What the conversion changes besides names",
        "",
        *(f"- {note}" for note in source.notes),
        "",
        "## Usage",
        "",
        "Each of these calls was checked at conversion to give the converted model's logits"
        + (" (config.json lets stock timm build the model: attnzoo is needed only for the name)." if stock
           else "; they need `import attnzoo` first."),
        "",
        "```python",
        "import attnzoo  # registers attnzoo's architectures in timm",
        "import timm",
        "",
        'folder = "path/to/this/folder"',
        *(f"model = {call}" for call in loading),
        "```",
        "",
    ]
    attentions = [op["attn"] for op in config["attnzoo"]["surgery"] if op["op"] == "attention"]
    data = ModelCardData(
        library_name="timm",
        license=source.license,
        tags=["image-classification", "timm", "attnzoo", *(f"attention-{a}" for a in attentions), "converted"],
        pipeline_tag="image-classification",
        model_name=name,
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
