"""Model cards that carry their evidence: what was trained, on what, how well, how long, on which hardware.

Every number on a card comes from the run folder (``summary.json``, ``recipe.yaml``; see the run-folder
contract in docs/training.md), in the spirit of torchvision's weights entries. Nothing machine-specific is
copied: no environment dump, no local paths (they are redacted from the recipe), no user names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from attnzoo.errors import CheckpointError

# Hub dataset ids for the dataset names the recipes use, so the card links the dataset page.
HUB_DATASETS = {"fashion-mnist": "zalando-datasets/fashion_mnist", "fmnist": "zalando-datasets/fashion_mnist",
                "mnist": "ylecun/mnist", "cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100",
                "imagenet-1k": "ILSVRC/imagenet-1k"}
REDACTED = "<local path>"
_LOCAL_PATH = re.compile(r"^(~|/|[A-Za-z]:[\\/]|\\\\)")


@dataclass(frozen=True)
class RunEvidence:
    """What a finished training run says about itself, read from its folder."""

    name: str
    summary: dict[str, Any]
    recipe: dict[str, Any] | None
    weights: str = "best"  # which checkpoint is published: "best" (selected on val) or "last"

    @classmethod
    def read(cls, run_dir: str | Path, weights: str = "best") -> "RunEvidence":
        """Read ``summary.json`` (required) and ``recipe.yaml`` (optional) from a run folder."""
        run_dir = Path(run_dir)
        if (run_dir / ".commit").is_dir():  # attnzoo.train.commit: a crash interrupted an epoch's commit
            raise CheckpointError(f"{run_dir} holds an epoch commit a crash interrupted; finish it with attnzoo train "
                                  f"--resume {run_dir / 'last.safetensors'} before reading the run")
        summary_path = run_dir / "summary.json"
        if not summary_path.is_file():
            raise CheckpointError(
                f"{run_dir} has no summary.json, so it is not a finished run folder; train it first "
                "(attnzoo train ...) or point at runs/<name>"
            )
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{summary_path} is not valid JSON ({err}); re-run or repair the run") from None
        recipe_path = run_dir / "recipe.yaml"
        try:
            recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8")) if recipe_path.is_file() else None
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or type(err).__name__
            raise CheckpointError(f"{recipe_path} is not valid YAML ({problem}); re-run or repair the run") from None
        if not isinstance(summary, dict):
            raise CheckpointError(f"{summary_path} is not a JSON object; re-run or repair the run")
        name = re.split(r"[\\/]", str(summary.get("name") or run_dir.name))[-1]  # a name, never a path
        return cls(name=name, summary=summary, recipe=recipe if isinstance(recipe, dict) else None, weights=weights)

    @property
    def old_protocol(self) -> bool:
        """The run chose its best epoch on the split it reports (before the validation split existed)."""
        return self.summary.get("selection") != "val"

    @property
    def test_scores(self) -> dict[str, Any]:
        """Test top-1/top-5 of the published weights (top-5 only known for the last epoch's weights)."""
        s = self.summary
        if self.old_protocol:
            return {"top1": s.get("top1" if self.weights == "last" else "best_top1"),
                    "top5": s.get("top5") if self.weights == "last" else None}
        if self.weights == "last" or s.get("best_epoch") == s.get("epochs"):
            return {"top1": s.get("test_top1"), "top5": s.get("test_top5")}
        return {"top1": s.get("best_test_top1"), "top5": None}

    @property
    def dataset(self) -> str | None:
        return self.summary.get("dataset")


def redact_local_paths(value: Any) -> Any:
    """``value`` with every string that is an absolute or home-relative filesystem path replaced."""
    if isinstance(value, dict):
        return {k: redact_local_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_local_paths(v) for v in value]
    if isinstance(value, str) and _LOCAL_PATH.match(value):
        return REDACTED
    return value


# Recipe fields that hold local paths whatever their form (relative ones too); an hf-hub: init is public.
_PATH_FIELDS = (("data", "root"), ("output",), ("model", "init"))


def redact_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` as it may be published: path fields and any absolute path replaced by ``<local path>``."""
    recipe = redact_local_paths(recipe)
    for keys in _PATH_FIELDS:
        node = recipe
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node.get(key), dict) else {}
        value = node.get(keys[-1])
        if isinstance(value, str) and not value.startswith("hf-hub:"):
            node[keys[-1]] = REDACTED
    return recipe


def _percent(value: Any) -> str:
    return f"{value:.2f} %" if isinstance(value, (int, float)) else "not measured"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "not recorded"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def _gmacs(cost: tuple[float, float] | None) -> str:
    return f"{cost[0]:.4f} (attention: {cost[1]:.4f})" if cost else "not counted"


def _results_table(evidence: RunEvidence, input_size: tuple[int, ...], cost: tuple[float, float] | None) -> str:
    s = evidence.summary
    params = s.get("params")
    published = "the last epoch" if evidence.weights == "last" else "the best epoch"
    if evidence.old_protocol:
        scores = [("Selection", "old protocol: the best epoch was chosen on the test split, which overstates "
                                "its accuracy"),
                  ("Test top-1 (last epoch)", _percent(s.get("top1"))),
                  ("Test top-5 (last epoch)", _percent(s.get("top5"))),
                  ("Test top-1 (best epoch, chosen on test)", _percent(s.get("best_top1")))]
    else:
        splits = s.get("splits") or {}
        best_epoch = f" (epoch {s['best_epoch']})" if s.get("best_epoch") is not None else ""  # None: unfinished
        scores = [("Selection", f"best epoch{best_epoch} chosen on the val split "
                                f"({splits.get('num_val')} images held out of training); test never used"),
                  ("Published weights", published),
                  (f"Test top-1 ({published}'s weights)", _percent(evidence.test_scores["top1"])),
                  ("Test top-1 (last epoch)", _percent(s.get("test_top1"))),
                  ("Test top-5 (last epoch)", _percent(s.get("test_top5"))),
                  ("Val top-1 (last epoch)", _percent(s.get("top1"))),
                  ("Val top-1 (best epoch)", _percent(s.get("best_top1")))]
    rows = [
        ("Dataset", s.get("dataset", "not recorded")),
        *scores,
        ("Params", f"{params / 1e6:.2f} M" if isinstance(params, (int, float)) else "not recorded"),
        ("GMACs per image", _gmacs(cost)),
        ("Input size", "x".join(str(d) for d in input_size)),
        ("Epochs", s.get("epochs", "not recorded")),
        ("Training time", _duration(s.get("train_time_s"))),
        ("Hardware", s.get("hardware", "not recorded")),
        ("Run status", s.get("status", "not recorded")),
    ]
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def _card_data(repo_id: str, record: dict, evidence: RunEvidence | None, license: str) -> ModelCardData:
    attentions = [op["attn"] for op in record.get("surgery", []) if op.get("op") == "attention"]
    tags = ["image-classification", "timm", "attnzoo", *(f"attention-{a}" for a in attentions)]
    dataset = evidence.dataset if evidence else None
    dataset_id = HUB_DATASETS.get(str(dataset).lower(), dataset) if dataset else None
    eval_results = None
    scores = evidence.test_scores if evidence else {}
    if dataset_id and isinstance(scores.get("top1"), (int, float)):  # the test split, published weights
        eval_results = [
            EvalResult(task_type="image-classification", dataset_type=dataset_id, dataset_name=str(dataset),
                       dataset_split="test", metric_type="accuracy", metric_name=f"top-{k}",
                       metric_value=scores[f"top{k}"])
            for k in (1, 5) if isinstance(scores.get(f"top{k}"), (int, float))
        ]
    return ModelCardData(
        library_name="timm", license=license, tags=tags, datasets=[dataset_id] if dataset_id else None,
        pipeline_tag="image-classification", model_name=repo_id.split("/")[-1], eval_results=eval_results,
    )


def render_card(
    repo_id: str,
    record: dict,
    *,
    input_size: tuple[int, ...],
    evidence: RunEvidence | None = None,
    cost: tuple[float, float] | None = None,
    stock_timm: bool = False,
    license: str = "apache-2.0",
) -> ModelCard:
    """The README.md model card for ``repo_id``: Hub metadata, results, usage, surgery record, recipe.

    ``record`` is the attnzoo model config (architecture, classes, surgery); ``cost`` the (total,
    attention) GMACs per image at ``input_size``; ``stock_timm`` says whether config.json lets timm
    rebuild the model without attnzoo installed.
    """
    name = repo_id.split("/")[-1]
    arch = record["architecture"]
    ops = record.get("surgery", [])
    lines = [f"# {name}", ""]
    summary = f"`{arch}` ({record['num_classes']} classes, in_chans={record['in_chans']})"
    if ops:
        summary += " with attnzoo model surgery: " + "; ".join(_describe(op) for op in ops)
    lines += [summary + ".", ""]
    if evidence is not None:
        lines += [
            f"Trained by the attnzoo run `{evidence.name}`{_recipe_source(evidence.summary.get('recipe'))}"
            + (f", seed {evidence.summary['seed']}" if "seed" in evidence.summary else "")
            + ". Accuracy, params, time and hardware are copied from that run's `summary.json`; GMACs "
            "(multiply-adds, timm's convention) are counted on the published model at export.", "",
            "## Results", "", _results_table(evidence, input_size, cost),
        ]
    else:
        lines += ["No training run was attached to this upload, so the card reports no metrics.", "",
                  f"GMACs per image at {'x'.join(map(str, input_size))}: {_gmacs(cost)}.", ""]
    lines += [
        "## Usage", "", "```python", "import attnzoo  # registers attnzoo's models and attention in timm",
        "import timm", "", f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()',
        "# fine-tune on a new task: a fresh classifier for 5 classes",
        f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True, num_classes=5)', "```", "",
    ]
    if stock_timm:
        lines += ["`config.json` carries `model_args` with which stock timm rebuilds this exact model, so "
                  "loading also works without attnzoo installed.", ""]
    else:
        lines += ["Loading needs attnzoo installed: stock timm has no exact equivalent of this model's "
                  "surgery (attention modules or stem), so `config.json` carries attnzoo's record instead.", ""]
    lines += ["## Model surgery record", "", "```json", json.dumps(record, indent=2), "```", ""]
    if evidence is not None and evidence.recipe is not None:
        recipe_yaml = yaml.safe_dump(redact_recipe(evidence.recipe), sort_keys=False).rstrip()
        lines += ["## Resolved recipe", "", "```yaml", recipe_yaml, "```", ""]
    content = f"---\n{_card_data(repo_id, record, evidence, license).to_yaml()}\n---\n\n" + "\n".join(lines)
    return ModelCard(content)


def _recipe_source(recipe: Any) -> str:
    """Where the recipe came from: a shipped recipe's path (``recipes/...``), or only a local file's name."""
    if not isinstance(recipe, str) or not recipe:
        return ""
    if _LOCAL_PATH.match(recipe) or not recipe.startswith("recipes/") or ".." in recipe:
        name = re.split(r"[\\/]", recipe)[-1]
        return f" from the local recipe file `{name}` (resolved below)"
    return f" from the recipe `{recipe}`"


def _describe(op: dict) -> str:
    if op.get("op") == "attention":
        stages = ", ".join(str(s) for s in op.get("stages", []))
        kwargs = ", ".join(f"{k}={v}" for k, v in (op.get("kwargs") or {}).items())
        return f"{op['attn']} attention in stage(s) {stages}" + (f" ({kwargs})" if kwargs else "")
    return str(op.get("op", op))
