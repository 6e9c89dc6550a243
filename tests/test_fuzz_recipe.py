"""Fuzzing `attnzoo train`'s recipe: every meaningless or dangerous value is refused before any work, as one
`error:` line naming the field (exit status 2, no traceback), and no file that existed before changes."""

import pytest
import torch

from fuzz_helpers import assert_one_line_error, digest, run_cli
from train_helpers import make_tiny_fashion_mnist, write_recipe

# (overrides, what the one error line must say)
BAD_OVERRIDES = [
    (["model.attention=se", "model.attn_kwargs={rd_ratio: 0}"], "rd_ratio=0 is out of range"),
    (["model.attention=se", "model.attn_kwargs={rd_ratio: -0.5}"], "rd_ratio=-0.5"),
    (["model.attention=se", "model.attn_kwargs={rd_ratio: 1000000.0}"], "rd_ratio=1000000.0"),
    (["model.attention=se", "model.attn_kwargs={rd_ratio: .nan}"], "rd_ratio=nan"),
    (["model.attention=se", "model.attn_kwargs={rd_ratio: true}"], "rd_ratio=True"),
    (["model.attention=se", "model.attn_kwargs={rd_channels: 0}"], "rd_channels=0"),
    (["model.attention=se", "model.attn_kwargs={rd_channels: -4}"], "rd_channels=-4"),
    (["model.attention=se", "model.attn_kwargs={rd_channels: 100000}"], "rd_channels=100000"),
    (["model.attention=se", "model.attn_kwargs={rd_divisor: 0}"], "rd_divisor=0"),
    (["model.attention=se", "model.attn_kwargs={gate_layer: bogus}"], "gate_layer='bogus'"),
    (["model.attention=se", "model.attn_kwargs={foo: 1}"], "does not take foo"),
    (["model.attention=eca", "model.attn_kwargs={kernel_size: -3}"], "kernel_size=-3"),
    (["model.attention=eca", "model.attn_kwargs={kernel_size: 4}"], "kernel_size=4"),
    (["model.attention=eca", "model.attn_kwargs={gamma: 0}"], "gamma=0"),
    (["model.attention=cbam", "model.attn_kwargs={spatial_kernel_size: 0}"], "spatial_kernel_size=0"),
    (["model.attention=cbam", "model.attn_kwargs={spatial_kernel_size: -7}"], "spatial_kernel_size=-7"),
    (["model.attention=cbam", "model.attn_kwargs={spatial_kernel_size: 8}"], "spatial_kernel_size=8"),
    (["model.attention=cbam", "model.attn_kwargs={spatial_kernel_size: 99}"], "spatial_kernel_size=99"),
    (["model.attention=cbam", "model.attn_kwargs={act_layer: nonexistent}"], "act_layer='nonexistent'"),
    (["model.attention=cbam_spatial", "model.attn_kwargs={kernel_size: 2}"], "kernel_size=2"),
    (["model.attention=mhsa", "model.attn_kwargs={num_heads: 0}"], "num_heads=0"),
    (["model.attention=mhsa", "model.attn_kwargs={num_heads: -2}"], "num_heads=-2"),
    (["model.attention=mhsa", "model.attn_kwargs={qkv_bias: 2}"], "qkv_bias=2"),
    (["model.attention=simam", "model.attn_kwargs={e_lambda: 0}"], "e_lambda=0"),
    (["model.attention=simam", "model.attn_kwargs={e_lambda: -1}"], "e_lambda=-1"),
    (["model.attention=coord", "model.attn_kwargs={rd_ratio: 2}"], "rd_ratio=2"),
    (["model.attention=simam", "model.preserve=true"], "model.preserve"),
    (["model.attention=bogus"], "model.attention: unknown attention 'bogus'"),
    (["model.attention=se", "model.stages=[]"], "model.stages: empty"),
    (["model.attention=se", "model.stages=[0]"], "stage numbers count from 1"),
    (["model.attention=se", "model.stages=[true]"], "model.stages[0]"),
    (["model.attention=se", "model.stages=3"], "model.stages"),
    (["model.attention=null", "model.stages=[1]"], "model.attention: null"),
    (["model.attention=null", "model.attn_kwargs={rd_ratio: 0.5}"], "model.attention: null"),
    (["model.name=resnet18_cbma"], "did you mean resnet18_cbam"),
    (["model.name=null"], "model.name"),
    (["model.init=hf-hub:../x"], "model.init"),
    (["model.init=hf-hub:org/na me"], "model.init"),
    (["model.init=/nonexistent/w.safetensors"], "model.init"),
    (["model.num_classes=-1"], "model.num_classes: -1"),
    (["model.num_classes=0"], "model.num_classes: 0"),
    (["model.num_classes=10000000"], "model.num_classes: 10000000"),
    (["model.in_chans=0"], "model.in_chans: 0"),
    (["model.in_chans=-3"], "model.in_chans: -3"),
    (["model.in_chans=100000"], "model.in_chans: 100000"),
    (["model.drop_rate=1.0"], "model.drop_rate"),
    (["model.drop_rate=-0.2"], "model.drop_rate"),
    (["data.img_size=0"], "data.img_size: 0"),
    (["data.img_size=-28"], "data.img_size: -28"),
    (["data.img_size=100000"], "data.img_size: 100000"),
    (["data.workers=-1"], "data.workers"),
    (["data.resize=nearest"], "data.resize"),
    (["data.dataset=folder", "data.root=null"], "data.root: required"),
    (["data.dataset=folder", "data.root=/nonexistent/images"], "does not exist"),
    (["aug.hflip=5"], "aug.hflip: 5"),
    (["aug.hflip=-0.1"], "aug.hflip"),
    (["aug.re_prob=1.5"], "aug.re_prob"),
    (["aug.crop_padding=-3"], "aug.crop_padding: -3"),
    (["aug.crop_padding=1000"], "aug.crop_padding: 1000"),
    (["aug.scale=[0.5, 0.1]"], "aug.scale"),
    (["aug.scale=[0, 1]"], "aug.scale"),
    (["aug.scale=[0.1]"], "aug.scale"),
    (["aug.color_jitter=-1"], "aug.color_jitter"),
    (["max_steps=0"], "max_steps: 0"),
    (["max_steps=-5"], "max_steps: -5"),
    (["epochs=0"], "epochs"),
    (["epochs=-1"], "epochs"),
    (["batch_size=0"], "batch_size"),
    (["eval_batch_size=0"], "eval_batch_size"),
    (["checkpoint_every=-1"], "checkpoint_every"),
    (["seed=-1"], "seed: -1"),
    (["seed=4294967296"], "seed: 4294967296"),
    (["name=null"], "field name"),
    (["name=../../x"], "'../../x' is not a run folder name"),
    (["name=a/b"], "'a/b' is not a run folder name"),
    (["name=.hidden"], "is not a run folder name"),
    (["name=''"], "is not a run folder name"),
    (["name=has space"], "is not a run folder name"),
    (["name=123"], "field name"),
    (["output=''"], "field output"),
    (["optim.name=bogus"], "optim.name: 'bogus' is not a timm optimizer"),
    (["optim.name=sdg"], "did you mean sgd"),
    (["optim.lr=-0.1"], "optim.lr: -0.1"),
    (["optim.lr=.nan"], "optim.lr: nan"),
    (["optim.lr=.inf"], "optim.lr: inf"),
    (["optim.lr=fast"], "optim.lr"),
    (["optim.momentum=1.5"], "optim.momentum"),
    (["optim.weight_decay=-1"], "optim.weight_decay"),
    (["label_smoothing=1.5"], "label_smoothing: 1.5"),
    (["label_smoothing=-0.1"], "label_smoothing"),
    (["label_smoothing=1.0"], "label_smoothing"),
    (["threads=-1"], "threads: -1"),
    (["threads=0"], "threads: 0"),
    (["device=tpu"], "field device"),
    (["device=banana"], "field device"),
    (["sched.name=bogus"], "sched.name"),
    (["sched.warmup_epochs=-1"], "sched.warmup_epochs"),
    (["sched.decay_rate=0"], "sched.decay_rate"),
    (["sched.decay_epochs=0"], "sched.decay_epochs"),
    (["sched.decay_milestones=[30, 10]"], "sched.decay_milestones"),
    (["sched.min_lr=-1"], "sched.min_lr"),
    (["ema.decay=1.0"], "ema.decay"),
    (["ema.decay=0"], "ema.decay"),
    (["mixup.mixup_alpha=-1"], "mixup.mixup_alpha"),
    (["mixup.prob=2"], "mixup.prob"),
    (["mixup.switch_prob=-1"], "mixup.switch_prob"),
    (["amp=fp8"], "field amp"),
    (["optim.lrr=0.1"], "optim.lrr: unknown key"),
    (["optim=5"], "field optim: expected a mapping"),
    (["optim.lr"], "expected section.field=value"),
    (["=1"], "expected section.field=value"),
    (["model.name.x=1"], "is not a section"),
    (["optim.lr=[1,"], "is not valid YAML"),
    (["optim.lr=*a"], "is not valid YAML"),
]
if not torch.cuda.is_available():
    BAD_OVERRIDES += [(["device=cuda"], "no CUDA GPU is visible"), (["device=cuda:7"], "no CUDA GPU is visible")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    data = make_tiny_fashion_mnist(root / "data", train=64, test=32)
    recipe = write_recipe(root / "r.yaml", data, root / "runs", max_steps=1)
    return root, recipe


@pytest.mark.parametrize(("overrides", "match"), BAD_OVERRIDES, ids=[" ".join(o) for o, _ in BAD_OVERRIDES])
def test_bad_recipe_value_is_one_line_before_any_work(workspace, overrides, match):
    root, recipe = workspace
    before = digest(root)
    code, _, err = run_cli("train", str(recipe), *[a for o in overrides for a in ("--set", o)])
    assert_one_line_error(code, err, match)
    assert digest(root) == before
    assert not (root / "runs").exists()


BAD_FILES = [
    ("alias bomb", "model:\n  name: cnn3\n  attention: se\n  attn_kwargs:\n    a: &a [x, x, x, x, x, x, x, x]\n"
                   "    b: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n    c: [*b, *b, *b, *b, *b, *b, *b, *b]\n", "aliases"),
    ("one alias", "model: &m {name: cnn3}\nother: *m\n", "aliases"),
    ("deep nesting", "model: " + "[" * 20000 + "]" * 20000 + "\n", "not valid YAML"),
    ("a list", "- model\n- data\n", "must be a mapping"),
    ("a scalar", "42\n", "must be a mapping"),
    ("empty", "", "model: missing"),
    ("python tag", "model: !!python/object/apply:os.system [echo hi]\n", "not valid YAML"),
    ("tabs", "model:\n\tname: cnn3\n", "not valid YAML"),
    ("unclosed", "model: {name: cnn3\n", "not valid YAML"),
    ("duplicate section types", "model: [cnn3]\n", "field model: expected a mapping"),
    ("defaults cycle", "defaults: [self.yaml]\nmodel: {name: cnn3}\n", "cycle"),
    ("defaults missing", "defaults: [nope.yaml]\nmodel: {name: cnn3}\n", "does not exist"),
    ("too large", "model: {name: cnn3}\n" + "# padding\n" * 120000, "bytes; a recipe is at most"),
]


@pytest.mark.parametrize(("text", "match"), [(t, m) for _, t, m in BAD_FILES], ids=[n for n, _, _ in BAD_FILES])
def test_bad_recipe_file_is_one_line(tmp_path, text, match):
    path = tmp_path / "self.yaml"
    path.write_text(text)
    before = digest(tmp_path)
    code, _, err = run_cli("train", str(path))
    assert_one_line_error(code, err, match)
    assert digest(tmp_path) == before


def test_undecodable_recipe_is_one_line(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"model: \xff\xfe\x00\x81 garbage")
    code, _, err = run_cli("train", str(path))
    assert_one_line_error(code, err, "not valid YAML")


def test_a_recipe_that_is_a_folder_is_one_line(tmp_path):
    code, _, err = run_cli("train", str(tmp_path))
    assert_one_line_error(code, err, "does not exist")
