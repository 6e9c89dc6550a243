"""Write docs/weights.md: every attnzoo ``name.tag`` with weights, and the checkpoints ``attnzoo convert`` reads.

Usage: ``python scripts/weights_catalogue.py`` rewrites docs/weights.md from timm's registry (after
``import attnzoo``) and the convert sources. Params and GMACs come from results/cost/weights_costs.json;
an architecture missing there is counted here first (``count_macs`` at the tag's input size, seconds per
model) and added, so the test that rebuilds the page from the registry needs no model at all.
``--recount`` counts every architecture again.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import timm  # noqa: E402

from attnzoo.convert import registry as convert_registry  # noqa: E402
from attnzoo.flops import count_macs  # noqa: E402
from attnzoo.models.cfgs import is_preserving  # noqa: E402
from attnzoo.models.registry import INJECTED, hub_org  # noqa: E402

CATALOGUE = ROOT / "docs" / "weights.md"
COSTS = ROOT / "results" / "cost" / "weights_costs.json"
# The rows of timm's own results table for the checkpoints attnzoo's tags load, copied unchanged.
TIMM_RESULTS = ROOT / "results" / "timm" / "results-imagenet-excerpt.csv"
TIMM_RESULTS_URL = ("https://github.com/huggingface/pytorch-image-models/blob/"
                    "0173a139a2c66db3a41ebfe1d8ac4fb02483642e/results/results-imagenet.csv")
ATTNZOO_NAMES = ("cnn3", *INJECTED)

# kind -> (heading, what the kind is and where its weights are)
KINDS = {
    "published": (
        "Published weights",
        "Published weights under attnzoo names: the very file timm loads for its own name, which loads strictly "
        "into the attnzoo architecture with equal logits (`scripts/published_weights.py` checks every candidate "
        "in `timm.list_pretrained()`). The top-1 is the publisher's figure for that file.",
    ),
    "preserving": (
        "Function-preserving starts",
        "The plain backbone's published weights, with the attention initialised so that the network computes "
        "exactly the backbone's function. **The attention is untrained**; the top-1 quoted is the backbone's. "
        "Fine-tune before comparing attention with anything.",
    ),
    "fmnist-trained": (
        "Fashion-MNIST weights",
        "Weights of the shipped recipes (`recipes/fashion_mnist/`). **Not published**: the repos "
        "`$ATTNZOO_HUB_ORG/<name>.fmnist` (default organisation `attnzoo`) exist only once someone trains the "
        "recipe and runs `attnzoo push` (README, Hub); until then loading the tag raises a one-line `HubError` "
        "naming the repo. attnzoo's own test accuracies for these recipes are in the README and "
        "`results/LEADERBOARD.md`, not here: this page quotes only publishers' figures.",
    ),
    "converted": (
        "Converted checkpoints",
        "Checkpoints that other code bases publish and `attnzoo convert` turns into attnzoo weights "
        "([docs/convert.md](convert.md)). **Not hosted by attnzoo**: download the source's file, convert it, and "
        "load the folder by name with `pretrained_cfg_overlay=dict(file=...)`. The top-1 is the source's figure.",
    ),
}


@dataclass(frozen=True)
class Row:
    """One catalogue line; ``build`` is what ``timm.create_model`` builds to count its cost."""

    name_tag: str
    kind: str
    source: str
    top1: str
    licence: str
    build: str
    input_size: tuple[int, int, int]
    num_classes: int

    @property
    def cost_key(self) -> str:
        """Tags of one name at one input size and head share the architecture, so they share the count."""
        return f"{self.build.partition('.')[0]} {'x'.join(map(str, self.input_size))} {self.num_classes}"


def _kind(tag: str) -> str:
    if tag == "fmnist":
        return "fmnist-trained"
    return "preserving" if is_preserving(tag) else "published"


def timm_results() -> dict[str, dict[str, str]]:
    """timm's ImageNet-1k validation results by ``model.tag`` (the committed excerpt)."""
    with TIMM_RESULTS.open(encoding="utf-8", newline="") as f:
        return {row["model"]: row for row in csv.DictReader(f)}


def _top1(kind: str, cfg: dict, results: dict[str, dict[str, str]]) -> str:
    """The publisher's figure for the file the tag loads, or why there is none."""
    repo = cfg["hf_hub_id"]
    if not repo.startswith("timm/"):
        return "none published"
    checkpoint = repo.partition("/")[2]
    row = results.get(checkpoint)
    if row is None:
        return f"`{checkpoint}` is not in the timm table cited above"
    whose = f"the backbone `{checkpoint}`'s, attention untrained" if kind == "preserving" else f"`{checkpoint}`"
    return f"{row['top1']} at {row['img_size']} px ({whose}; timm's results table)"


def _shown_repo(kind: str, cfg: dict) -> str:
    """The Hub repo, with the fmnist repos' organisation as the setting that chooses it."""
    if kind == "fmnist-trained":
        return cfg["hf_hub_id"].replace(f"{hub_org()}/", "$ATTNZOO_HUB_ORG/", 1)
    return cfg["hf_hub_id"]


def registered_rows() -> list[Row]:
    """A row per registered attnzoo ``name.tag`` whose cfg names weights."""
    rows, results = [], timm_results()
    for name_tag in timm.list_pretrained():
        name, _, tag = name_tag.partition(".")
        cfg = timm.get_pretrained_cfg(name_tag).to_dict()
        if name not in ATTNZOO_NAMES or not cfg.get("hf_hub_id"):
            continue
        file, kind = cfg.get("hf_hub_filename") or "model.safetensors", _kind(tag)
        rows.append(Row(name_tag, kind, f"`{_shown_repo(kind, cfg)}` ({file})", _top1(kind, cfg, results),
                        cfg.get("license") or "not stated", name_tag, tuple(cfg["input_size"]),
                        cfg["num_classes"]))
    return rows


def converted_rows() -> list[Row]:
    """A row per (convert source, architecture): the tag ``attnzoo convert`` gives its output."""
    rows = []
    for source in map(convert_registry.get_source, convert_registry.list_sources()):
        for arch in source.architectures:
            results = source.published.get(arch, ())
            top1 = "; ".join(f"{r.top1:g} ({r.citation})" for r in results) or "none published"
            rows.append(Row(f"{arch}.{source.tag}", "converted", f"[{source.name}]({source.repo_url})", top1,
                            source.license, arch, tuple(source.data_config["input_size"]), 1000))
    return rows


def count_cost(row: Row) -> dict[str, int]:
    """Parameters and MACs (per image) of the row's architecture at its input size, exact."""
    model = timm.create_model(row.build, num_classes=row.num_classes)
    return {"params": sum(p.numel() for p in model.parameters()), "macs": count_macs(model, row.input_size).total}


def read_costs() -> dict[str, dict[str, int]]:
    return json.loads(COSTS.read_text(encoding="utf-8")) if COSTS.exists() else {}


def render(rows: list[Row], costs: dict[str, dict[str, int]]) -> str:
    """The page; :class:`KeyError` names a row whose cost the cost file lacks."""
    lines = [
        "# Weights",
        "",
        "Generated by `python scripts/weights_catalogue.py` from timm's registry and attnzoo's convert sources;",
        "a test rebuilds it, so it cannot go stale. Every tag loads the timm way, safetensors only:",
        "",
        "```python",
        "import attnzoo, timm",
        'model = timm.create_model("NAME.TAG", pretrained=True, num_classes=10)  # new head; in_chans=1 adapts',
        "```",
        "",
        "Params and GMACs (multiply-adds, attnzoo's counter, at the tag's input size, for its number of",
        "classes) are attnzoo's counts from `results/cost/weights_costs.json`. The top-1 column only quotes",
        "figures published by the source named in it, on ImageNet-1k validation: for timm's checkpoints, timm's",
        f"results table ([results-imagenet.csv]({TIMM_RESULTS_URL}), at the image size it names; the rows used",
        "are copied unchanged in `results/timm/results-imagenet-excerpt.csv`). attnzoo has not measured the",
        "accuracy of any weights listed here. The tests load a tag of each kind from a local Hub holding random",
        "weights shaped like the real repo (`tests/test_hub_tags.py`), never from huggingface.co.",
        "",
    ]
    for kind, (heading, intro) in KINDS.items():
        chosen = sorted((r for r in rows if r.kind == kind), key=lambda r: r.name_tag)
        lines += [f"## {heading}", "", intro, ""]
        if not chosen:
            lines += ["None registered yet.", ""]
            continue
        lines += ["| name.tag | weights | input | published top-1 (source) | params (M) | GMACs | licence |",
                  "|---|---|---|---|---|---|---|"]
        for r in chosen:
            cost = costs[r.cost_key]
            lines.append(f"| `{r.name_tag}` | {r.source} | {'x'.join(map(str, r.input_size))} | {r.top1} | "
                         f"{cost['params'] / 1e6:.2f} | {cost['macs'] / 1e9:.4g} | {r.licence} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recount", action="store_true", help="count every architecture again")
    args = parser.parse_args(argv)
    rows = registered_rows() + converted_rows()
    costs = {} if args.recount else read_costs()
    for row in rows:
        if row.cost_key not in costs:
            print(f"counting {row.cost_key}", file=sys.stderr, flush=True)
            costs[row.cost_key] = count_cost(row)
            COSTS.write_text(json.dumps(dict(sorted(costs.items())), indent=1) + "\n", encoding="utf-8")
    CATALOGUE.write_text(render(rows, costs), encoding="utf-8")
    print(f"wrote {CATALOGUE.relative_to(ROOT)} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
