"""Third parties add a source by subclassing and registering it; ``attnzoo convert --from`` then finds it."""

import importlib.metadata

import timm
import torch

import attnzoo  # noqa: F401
from attnzoo.convert import ResNetSource, convert_checkpoint, list_sources, registry
from convert_helpers import assert_same_logits, images, randomized


class RenamedSe(ResNetSource):
    """A made-up code base: timm's SE-ResNet-18 with its SE module called ``attn`` (down / up)."""

    name = "renamed-se"
    title = "a test source"
    repo_url = "https://example.org/renamed-se"
    license = "apache-2.0"
    tag = "renamed"
    attention = "se"
    architectures = {"resnet18_se": "seresnet18 with attn.down/attn.up"}
    _RENAMES = {"attn.down.weight": "se.fc1.weight", "attn.down.bias": "se.fc1.bias",
                "attn.up.weight": "se.fc2.weight", "attn.up.bias": "se.fc2.bias"}

    def attention_weights(self, block, name, value, target):
        if name not in self._RENAMES:
            return None
        return {block + self._RENAMES[name]: value[..., None, None] if value.ndim == 2 else value}


def renamed(key: str) -> str:
    return key.replace(".se.fc1.", ".attn.down.").replace(".se.fc2.", ".attn.up.")


def test_a_registered_source_converts(monkeypatch, tmp_path):
    monkeypatch.setitem(registry._SOURCES, RenamedSe.name, RenamedSe())
    assert "renamed-se" in list_sources()
    source = randomized(timm.create_model("seresnet18"))
    weights = {renamed(k): v.flatten(1) if ".se.fc" in k and k.endswith("weight") else v
               for k, v in source.state_dict().items()}
    path = tmp_path / "renamed.pth"
    torch.save(weights, path)
    out = convert_checkpoint("renamed-se", "resnet18_se", path, tmp_path / "out")
    assert_same_logits(source, timm.create_model(f"local-dir:{out}", pretrained=True), images(1))
    assert "https://example.org/renamed-se" in (out / "README.md").read_text()


def test_an_installed_package_registers_its_source_through_an_entry_point(monkeypatch, tmp_path):
    """``attnzoo convert --from NAME`` finds a source that a package names in attnzoo.convert_sources."""
    plugin = tmp_path / "my_attnzoo_plugin.py"
    plugin.write_text("from attnzoo.convert import register_source\n"
                      "from test_convert_registry import RenamedSe\n"
                      "register_source(RenamedSe())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))
    entry_point = importlib.metadata.EntryPoint(
        name="renamed-se", value="my_attnzoo_plugin", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [entry_point] if group == registry.ENTRY_POINT_GROUP else [])
    registry._load_plugins.cache_clear()
    try:
        assert registry.get_source("renamed-se").repo_url == "https://example.org/renamed-se"
    finally:
        registry._load_plugins.cache_clear()
