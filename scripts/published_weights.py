"""Find the timm checkpoints attnzoo names can start from; write the table the registry turns into tags.

Two kinds of tag come out of it. Published: a timm checkpoint that loads into an attnzoo name as it is.
A timm architecture is a candidate when its name, without a ``legacy_``/``gluon_``/``tf_`` prefix and then an
``se``/``eca`` prefix, is an attnzoo backbone (``seresnet50`` -> resnet50, ``ecaresnet50d`` -> resnet50d,
``mobilenetv3_large_100``, whose SE is built in). Each candidate is tried against every attention on that
backbone: timm's state dict must load strictly (same keys and shapes), and with random weights and every
BatchNorm woken (timm zero-initialises the last BN of each residual branch, which would silence the
attention) both models must give the same logits (< 1e-5). Nothing is downloaded: all tags of an
architecture share its structure, and a tag with another head is checked with that head. Only tags whose
weights are on the Hub are kept; their cfg pins ``model.safetensors``.

Function-preserving (``<tag>_untrained_attn``): each backbone's default timm tag under every attention that
``preserve=True`` can inject into it; the attention starts untrained, initialised so that the network
computes exactly the backbone's function, which is checked here on random woken weights (logits < 1e-5).

    python scripts/published_weights.py     # rewrites attnzoo/models/published.py and results/weights/published_check.txt

It took 19 minutes on a 2-core CPU shared with other jobs (load average about 8), timm 1.0.31.
"""

from __future__ import annotations

import argparse
import copy
import pprint
import re
import sys
from pathlib import Path

import timm
import torch
from torch import nn

import attnzoo  # noqa: F401  (registers attnzoo's names)
from attnzoo.errors import AttnzooError
from attnzoo.models.cfgs import PRESERVE_SUFFIX, WEIGHTS_FILE
from attnzoo.models.registry import ATTENTIONS, BACKBONES, INJECTED
from attnzoo.surgery import inject

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from attention_helpers import wake  # noqa: E402  (the tests' BatchNorm waking: one copy serves both)

TOLERANCE = 1e-5
INPUT = (2, 3, 64, 64)
# Fields of the source cfg that say where its weights are or what it is called; attnzoo sets its own.
DROPPED = ("url", "file", "state_dict", "source", "architecture", "tag", "hf_hub_filename", "custom_load")


def backbone_of(arch: str) -> str | None:
    """The attnzoo backbone ``arch`` could be with attention, if any."""
    stripped = re.sub(r"^(legacy_|gluon_|tf_)", "", arch)
    for candidate in (stripped, re.sub(r"^(se|eca)", "", stripped)):
        if candidate in BACKBONES:
            return candidate
    return None


def signature(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def compare(arch: str, name: str, num_classes: int) -> str:
    """'' if ``arch``'s state dict loads strictly into ``name`` and gives equal logits, else why not."""
    with torch.device("meta"):
        source_sig = signature(timm.create_model(arch, num_classes=num_classes))
        target_sig = signature(timm.create_model(name, num_classes=num_classes))
    if source_sig.keys() != target_sig.keys():
        missing, extra = sorted(target_sig.keys() - source_sig.keys()), sorted(source_sig.keys() - target_sig.keys())
        return f"keys differ (missing {missing[:2]}, unexpected {extra[:2]})"
    shapes = [k for k in source_sig if source_sig[k] != target_sig[k]]
    if shapes:
        return f"shapes differ ({shapes[0]}: {source_sig[shapes[0]]} vs {target_sig[shapes[0]]})"
    torch.manual_seed(0)
    source = wake(timm.create_model(arch, num_classes=num_classes)).eval()
    target = timm.create_model(name, num_classes=num_classes).eval()
    target.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(*INPUT, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = source(x), target(x)
    diff = (expected - got).abs().max().item()
    if not (torch.isfinite(expected).all() and diff < TOLERANCE):  # False for NaN
        return f"logits differ by {diff:.2e}"
    return ""


def preserving_verdict(plain: nn.Module, expected: torch.Tensor, x: torch.Tensor, attn: str) -> str:
    """'' if ``attn`` injected with ``preserve=True`` keeps ``plain``'s logits exactly, else why not."""
    try:
        model = inject(copy.deepcopy(plain), attn, preserve=True)
    except AttnzooError as err:
        return f"refused: {err}"
    with torch.no_grad():
        got = model(x)
    diff = (expected - got).abs().max().item()
    return "" if torch.isfinite(expected).all() and diff < TOLERANCE else f"logits differ by {diff:.2e}"


def find_preserving() -> tuple[dict[str, dict], list[str]]:
    """(table of attnzoo ``name.<tag>_untrained_attn`` -> backbone tag and cfg, log lines)."""
    table: dict[str, dict] = {}
    log: list[str] = []
    for base in BACKBONES:
        source = timm.get_pretrained_cfg(base)
        tag = f"{base}.{source.tag}"
        torch.manual_seed(0)
        plain = wake(timm.create_model(base)).eval()
        x = torch.randn(*INPUT, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = plain(x)
        for attn in ATTENTIONS:
            name = f"{base}_{attn}"
            verdict = preserving_verdict(plain, expected, x, attn) if source.hf_hub_id else "no Hub repo"
            log.append(f"{tag:45s} -> {name:32s} {verdict or 'PRESERVED'}")
            if not verdict:
                table[f"{name}.{source.tag}{PRESERVE_SUFFIX}"] = dict(source=tag, cfg=published_cfg(tag))
        print(tag, "checked", file=sys.stderr)
    return table, log


def published_cfg(tag: str) -> dict:
    """The source tag's cfg, pointing at its Hub repo and safetensors file."""
    cfg = {k: v for k, v in timm.get_pretrained_cfg(tag).to_dict().items() if k not in DROPPED}
    cfg["hf_hub_filename"] = WEIGHTS_FILE
    return cfg


def default_first(tag: str) -> tuple[str, bool]:
    """Sort key: by architecture, its default tag first (the first published tag is the name's default)."""
    arch = tag.partition(".")[0]
    return arch, tag != f"{arch}.{timm.get_pretrained_cfg(arch).tag}"


def find_published() -> tuple[dict[str, dict], list[str]]:
    """(table of attnzoo ``name.tag`` -> source tag and cfg, log lines of every check)."""
    table: dict[str, dict] = {}
    log: list[str] = []
    verdicts: dict[tuple[str, str, int], str] = {}
    for tag in sorted(timm.list_pretrained(), key=default_first):
        arch, _, tag_name = tag.partition(".")
        base = backbone_of(arch)
        if base is None or arch in INJECTED:  # attnzoo's own tags are listed too
            continue
        cfg = timm.get_pretrained_cfg(tag)
        for attn in ATTENTIONS:
            name = f"{base}_{attn}"
            key = (arch, name, cfg.num_classes)
            if key not in verdicts:
                verdicts[key] = compare(*key)
            verdict = verdicts[key] or ("" if cfg.hf_hub_id else "no Hub repo")
            log.append(f"{tag:45s} -> {name:32s} {verdict or 'MATCH'}")
            if not verdict:
                table[f"{name}.{tag_name}"] = dict(source=tag, cfg=published_cfg(tag))
        print(log[-1].split(" -> ")[0].strip(), "checked", file=sys.stderr)
    return table, log


def render_table(published: dict[str, dict], preserving: dict[str, dict]) -> str:
    return (
        '"""timm checkpoints that attnzoo names start from: the table the registry turns into tags.\n\n'
        f"Generated by scripts/published_weights.py with timm {timm.__version__}; do not edit by hand. Each entry\n"
        "maps an attnzoo ``name.tag`` to the timm tag whose Hub weights it loads and that tag's cfg.\n"
        "``PUBLISHED``: the checkpoint loads strictly into the attnzoo name with equal logits.\n"
        "``PRESERVING``: the backbone's checkpoint with the attention untrained (``preserve=True``).\n"
        '"""\n\n'
        f"TIMM_VERSION = {timm.__version__!r}\n"
        f"PUBLISHED = {pprint.pformat(published, indent=4, width=110, sort_dicts=False)}\n"
        f"PRESERVING = {pprint.pformat(preserving, indent=4, width=110, sort_dicts=False)}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "attnzoo/models/published.py")
    parser.add_argument("--log", type=Path, default=ROOT / "results/weights/published_check.txt")
    args = parser.parse_args()
    published, published_log = find_published()
    preserving, preserving_log = find_preserving()
    args.out.write_text(render_table(published, preserving))
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.write_text(
        f"scripts/published_weights.py, timm {timm.__version__}, torch {torch.__version__}, random woken weights, "
        f"input {INPUT}\n\nPublished: every candidate tag against every attention on its backbone; MATCH = "
        f"strict load (keys and shapes) and logits equal < {TOLERANCE}\n" + "\n".join(published_log)
        + f"\n\nFunction-preserving: each backbone's default tag; PRESERVED = preserve=True keeps its logits "
        f"< {TOLERANCE}\n" + "\n".join(preserving_log)
        + f"\n\n{len(published)} published and {len(preserving)} function-preserving tags registered\n"
    )
    print(f"{len(published)} published, {len(preserving)} preserving tags -> {args.out}; log {args.log}")


if __name__ == "__main__":
    main()
