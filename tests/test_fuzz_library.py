"""Fuzzing the library's entry points with hostile values: surgery and attention arguments, model records
from checkpoint metadata, Hub ids and revisions, IDX data files, state files. Each refusal is an
AttnzooError with a one-line message, raised before anything is allocated or written; valid neighbours of
each bad value give the correct result."""

import gzip
import json
import struct

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

import attnzoo
from attnzoo.data import read_idx
from attnzoo.data.fashion_mnist import load_fashion_mnist
from attnzoo.errors import AttnzooError, CheckpointError, DataFileError, HubError, RunFolderError, SurgeryError
from attnzoo.hub_client import check_revision, split_hub_name
from attnzoo.models import load_model, model_config, save_weights
from attnzoo.models.build import model_from_config
from attnzoo.surgery import surgery_record
from attnzoo.train import checkpoint, run_folder
from fuzz_helpers import digest
from train_helpers import write_idx


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert isinstance(err.value, AttnzooError) and "\n" not in message and message
    return message


BAD_INJECT = [
    ("se", {"rd_ratio": 0}, "rd_ratio=0"),
    ("se", {"rd_ratio": -1.0}, "rd_ratio=-1.0"),
    ("se", {"rd_ratio": 1e6}, "rd_ratio=1000000.0"),
    ("se", {"rd_ratio": float("nan")}, "rd_ratio=nan"),
    ("se", {"rd_ratio": float("inf")}, "rd_ratio=inf"),
    ("se", {"rd_ratio": "0.5"}, "rd_ratio='0.5'"),
    ("se", {"rd_channels": 0}, "rd_channels=0"),
    ("se", {"rd_channels": 10**9}, "rd_channels=1000000000"),
    ("se", {"rd_divisor": -8}, "rd_divisor=-8"),
    ("se", {"act_layer": "nonexistent"}, "act_layer='nonexistent'"),
    ("se", {"gate_layer": 3}, "gate_layer=3"),
    ("se", {"bogus": 1}, "does not take bogus"),
    ("cbam", {"spatial_kernel_size": 0}, "spatial_kernel_size=0"),
    ("cbam", {"spatial_kernel_size": -7}, "spatial_kernel_size=-7"),
    ("cbam", {"spatial_kernel_size": 8}, "spatial_kernel_size=8"),
    ("cbam", {"spatial_kernel_size": 7.0}, "spatial_kernel_size=7.0"),
    ("cbam", {"rd_ratio": 0}, "rd_ratio=0"),
    ("cbam_channel", {"rd_ratio": 1e6}, "rd_ratio=1000000.0"),
    ("cbam_spatial", {"kernel_size": 0}, "kernel_size=0"),
    ("eca", {"kernel_size": -3}, "kernel_size=-3"),
    ("eca", {"kernel_size": 0}, "kernel_size=0"),
    ("eca", {"gamma": 0}, "gamma=0"),
    ("eca", {"beta": 10**6}, "beta=1000000"),
    ("mhsa", {"num_heads": 0}, "num_heads=0"),
    ("mhsa", {"num_heads": -1}, "num_heads=-1"),
    ("mhsa", {"num_heads": 3}, "a divisor of the 128 channels"),
    ("mhsa", {"num_heads": 10**6}, "num_heads=1000000"),
    ("simam", {"e_lambda": 0.0}, "e_lambda=0.0"),
    ("simam", {"e_lambda": float("nan")}, "e_lambda=nan"),
    ("coord", {"rd_ratio": 16}, "rd_ratio=16"),
    ("nope", {}, "unknown attention 'nope'"),
]


@pytest.mark.parametrize(("attn", "kwargs", "match"), BAD_INJECT, ids=[f"{a}-{k}" for a, k, _ in BAD_INJECT])
def test_bad_attention_arguments_are_refused_and_the_model_is_untouched(attn, kwargs, match):
    model = timm.create_model("cnn3", num_classes=10, in_chans=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AttnzooError) as err:
        attnzoo.inject(model, attn, **kwargs)
    assert match in _one_line(err)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert surgery_record(model) == []


BAD_STAGES = [((), "give at least one stage"), ([], "give at least one stage"), ((True,), "stage True"),
              ((0,), "stage 0"), ((4,), "stage 4"), ((-1,), "stage -1"), (("1",), "stage '1'"), ("12", "stages='12'"),
              ((1.0,), "stage 1.0")]


@pytest.mark.parametrize(("stages", "match"), BAD_STAGES, ids=[repr(s) for s, _ in BAD_STAGES])
def test_bad_stages_are_refused_and_record_nothing(stages, match):
    model = timm.create_model("cnn3", num_classes=10, in_chans=1)
    with pytest.raises(SurgeryError) as err:
        attnzoo.inject(model, "se", stages=stages)
    assert match in _one_line(err)
    assert surgery_record(model) == []


GOOD_INJECT = [("se", {"rd_ratio": 0.25}), ("se", {"rd_channels": 4}), ("cbam", {"spatial_kernel_size": 3}),
               ("eca", {"kernel_size": 5}), ("mhsa", {"num_heads": 8}), ("simam", {"e_lambda": 1e-3}),
               ("se", {"act_layer": "silu"})]


@pytest.mark.parametrize(("attn", "kwargs"), GOOD_INJECT, ids=[f"{a}-{k}" for a, k in GOOD_INJECT])
def test_valid_neighbours_inject_and_change_the_output(attn, kwargs):
    model = timm.create_model("cnn3", num_classes=10, in_chans=1).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        plain = model(x)
        attnzoo.inject(model, attn, stages=[3], **kwargs)
        out = model(x)
    assert surgery_record(model)[0]["kwargs"] == kwargs
    assert torch.isfinite(out).all() and not torch.allclose(plain, out)


def _config(**changes):
    config = {"architecture": "cnn3", "base": "cnn3", "num_classes": 10, "in_chans": 1, "surgery": []}
    return {**config, **changes}


ATTN = {"op": "attention", "attn": "se", "stages": [1], "preserve": False, "kwargs": {}}
BAD_CONFIGS = [
    (_config(num_classes=10**9), "num_classes=1000000000"),
    (_config(num_classes=-1), "num_classes=-1"),
    (_config(num_classes="10"), "num_classes='10'"),
    (_config(num_classes=True), "num_classes=True"),
    (_config(in_chans=0), "in_chans=0"),
    (_config(in_chans=10**6), "in_chans=1000000"),
    (_config(base=None), "base=None"),
    (_config(architecture=["x"]), "architecture=['x']"),
    (_config(base="x" * 1000), "is not a model name"),
    (_config(surgery="all"), "surgery must be a list"),
    (_config(surgery=[ATTN] * 100), "at most 16"),
    (_config(surgery=[1]), "surgery must be a list"),
    (_config(surgery=[{"op": "rm -rf"}]), "unknown surgery operation"),
    (_config(surgery=[{**ATTN, "kwargs": {"rd_ratio": 1e6}}]), "rd_ratio=1000000.0"),
    (_config(surgery=[{**ATTN, "kwargs": {"rd_channels": 10**8}}]), "rd_channels=100000000"),
    (_config(surgery=[{**ATTN, "stages": [0]}]), "stages=[0]"),
    (_config(surgery=[{**ATTN, "stages": []}]), "stages=[]"),
    (_config(surgery=[{**ATTN, "stages": "all"}]), "stages='all'"),
    (_config(surgery=[{**ATTN, "attn": "nope"}]), "unknown attention"),
    (_config(surgery=[{**ATTN, "attn": None}]), "malformed"),
    (_config(surgery=[{**ATTN, "kwargs": []}]), "malformed"),
    (_config(surgery=[{**ATTN, "preserve": "yes"}]), "malformed"),
    (_config(surgery=[{"op": "small_input", "stride": 100}]), "stride=100"),
    (_config(base="resnet18_cbma", architecture="resnet18_cbma"), "did you mean resnet18_cbam"),
    ([1, 2], "expected a JSON object"),
    ("cnn3", "expected a JSON object"),
]


@pytest.mark.parametrize(("config", "match"), BAD_CONFIGS, ids=[str(i) for i in range(len(BAD_CONFIGS))])
def test_model_records_from_untrusted_files_are_bounded_before_allocation(config, match):
    with pytest.raises(AttnzooError) as err:
        model_from_config(config)
    assert match in _one_line(err)


@pytest.mark.parametrize("metadata", ["{not json", "[1, 2]", "null", json.dumps({"architecture": "cnn3"}),
                                      json.dumps(_config(num_classes=10**9))])
def test_checkpoint_metadata_that_is_not_a_model_record_is_refused(tmp_path, metadata):
    path = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, path, metadata={"attnzoo_config": metadata})
    before = digest(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    _one_line(err)
    assert digest(tmp_path) == before


def test_a_saved_model_still_loads(tmp_path):
    model = attnzoo.build_model("cnn3", num_classes=10, in_chans=1, attention="se", attn_kwargs={"rd_ratio": 0.25})
    save_weights(model, tmp_path / "w.safetensors")
    assert model_config(load_model(tmp_path / "w.safetensors")) == model_config(model)


BAD_HUB_NAMES = ["../x", "hf-hub:../x", "org/../x", "org/na me", "hf-hub:org/name@a b", "org/name@../x",
                 "org//name", "-org/name", "org/name-", "org/na--me", "hf-hub:", "", "org/", "/name", "org/name/x",
                 "org/n\x00me", "org/name@-rev", "org/name@rev/", "org/name@x.lock", "o" * 200 + "/name"]


@pytest.mark.parametrize("name", BAD_HUB_NAMES)
def test_bad_hub_ids_and_revisions_are_refused_before_any_request(name):
    with pytest.raises(HubError) as err:
        split_hub_name(name)
    _one_line(err)


@pytest.mark.parametrize(("name", "expected"), [
    ("org/name", ("org/name", None)), ("hf-hub:org/name@main", ("org/name", "main")),
    ("hf-hub:my-org/res_net.v2@exp/lr-0.05", ("my-org/res_net.v2", "exp/lr-0.05")), ("org/name@", ("org/name", None)),
])
def test_valid_hub_ids_split(name, expected):
    assert split_hub_name(name) == expected


@pytest.mark.parametrize("revision", ["a b", "..", "../main", "/x", "x/", "x.lock", "-x", "a//b", "", "x" * 300])
def test_bad_revisions_are_refused(revision):
    with pytest.raises(HubError) as err:
        check_revision(revision)
    _one_line(err)


def _idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


IMAGES = np.arange(4 * 28 * 28, dtype=np.uint8).reshape(4, 28, 28)


def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def _crc_broken() -> bytes:
    data = bytearray(_gz(_idx_bytes(IMAGES)))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    return bytes(data)


def _bomb() -> bytes:  # a header promising 100 bytes, then 64 MB of zeros: 64 kB compressed
    return _gz(struct.pack(">HBBI", 0, 8, 1, 100) + bytes(64 << 20))


BAD_IDX = [
    ("truncated.gz", _gz(_idx_bytes(IMAGES))[:-30], "not a readable gzip IDX file"),
    ("crc.gz", _crc_broken(), "not a readable gzip IDX file"),
    ("plain.gz", _idx_bytes(IMAGES), "not a readable gzip IDX file"),
    ("empty.gz", b"", "bad magic"),
    ("empty", b"", "bad magic"),
    ("magic", b"\x00\x00\x0d\x03" + bytes(100), "bad magic"),
    ("ndim0", b"\x00\x00\x08\x00", "bad magic"),
    ("ndim9", b"\x00\x00\x08\x09" + bytes(36), "bad magic"),
    ("short-header", b"\x00\x00\x08\x03\x00\x00", "cut short"),
    ("huge-header", struct.pack(">HBBIII", 0, 8, 3, 60000, 60000, 60000), "over the"),
    ("body-short", _idx_bytes(IMAGES)[:-1], "truncated or has trailing data"),
    ("body-long", _idx_bytes(IMAGES) + b"\x00", "truncated or has trailing data"),
    ("bomb.gz", _bomb(), "truncated or has trailing data"),
    ("text.gz", _gz(b"hello, world"), "bad magic"),
]


@pytest.mark.parametrize(("name", "raw", "match"), BAD_IDX, ids=[n for n, _, _ in BAD_IDX])
def test_damaged_idx_files_are_one_line_errors(tmp_path, name, raw, match):
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(DataFileError) as err:
        read_idx(path)
    assert match in _one_line(err)


def test_idx_files_round_trip(tmp_path):
    write_idx(tmp_path / "a.gz", IMAGES)
    (tmp_path / "b").write_bytes(_idx_bytes(IMAGES))
    assert np.array_equal(read_idx(tmp_path / "a.gz"), IMAGES) and np.array_equal(read_idx(tmp_path / "b"), IMAGES)


def _fmnist(root, train_images, train_labels, test_images=None, test_labels=None):
    root.mkdir()
    for stem, images, labels in (("train", train_images, train_labels),
                                 ("t10k", train_images if test_images is None else test_images,
                                  train_labels if test_labels is None else test_labels)):
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", labels)
    return root


LABELS = np.array([0, 3, 9, 1], dtype=np.uint8)
BAD_DATASETS = [
    ("label 12", IMAGES, np.array([0, 12, 1, 2], dtype=np.uint8), "has label 12"),
    ("label 255", IMAGES, np.array([255, 1, 1, 2], dtype=np.uint8), "has label 255"),
    ("32 px", np.zeros((4, 32, 32), np.uint8), LABELS, "shape (32, 32)"),
    ("flat images", np.zeros((4, 784), np.uint8), LABELS, "expected 28x28"),
    ("2-D labels", IMAGES, np.zeros((4, 2), np.uint8), "labels of shape (2,)"),
    ("fewer labels", IMAGES, LABELS[:3], "4 images but 3 labels"),
]


@pytest.mark.parametrize(("images", "labels", "match"), [c[1:] for c in BAD_DATASETS], ids=[c[0] for c in BAD_DATASETS])
def test_fashion_mnist_files_with_impossible_contents_are_refused_at_load(tmp_path, images, labels, match):
    root = _fmnist(tmp_path / "d", images, labels)
    with pytest.raises(DataFileError) as err:
        load_fashion_mnist("train", root)
    assert match in _one_line(err)


def test_test_images_of_another_size_than_train_are_refused(tmp_path):
    root = _fmnist(tmp_path / "d", IMAGES, LABELS, test_images=np.zeros((4, 32, 32), np.uint8))
    assert load_fashion_mnist("train", root)[0].shape == (4, 28, 28)
    with pytest.raises(DataFileError, match="shape \\(32, 32\\)"):
        load_fashion_mnist("test", root)


@pytest.mark.parametrize(("raw", "match"), [
    (b"not a safetensors file", "unreadable"),
    (b"\xff" * 8 + b"{}", "unreadable"),
])
def test_garbage_state_files_are_refused(tmp_path, raw, match):
    (tmp_path / "last.state.safetensors").write_bytes(raw)
    with pytest.raises(CheckpointError, match=match) as err:
        checkpoint.load_state(tmp_path / "last.safetensors")
    _one_line(err)


@pytest.mark.parametrize("header", ["{oops", "[1]", json.dumps({"format": 99}), "null", "[" * 100000])
def test_state_file_headers_that_are_not_ours_are_refused(tmp_path, header):
    save_file({"x": torch.zeros(1)}, tmp_path / "last.state.safetensors", metadata={checkpoint.STATE_KEY: header})
    with pytest.raises(CheckpointError) as err:
        checkpoint.read_header(tmp_path / "last.safetensors")
    _one_line(err)


@pytest.mark.parametrize("text", ["", "{", "[]", json.dumps({"run_id": 5}), json.dumps({"run_id": ""}), "\xff"])
def test_a_damaged_run_identity_is_refused(tmp_path, text):
    (tmp_path / "run.json").write_text(text, encoding="latin-1")
    with pytest.raises(RunFolderError) as err:
        run_folder.read_run_id(tmp_path)
    _one_line(err)


@pytest.mark.parametrize(("kwargs", "match"), [({"num_classes": -1}, "num_classes=-1"), ({"in_chans": 0}, "in_chans=0"),
                                               ({"num_classes": 10**8}, "num_classes=100000000")])
def test_build_model_refuses_impossible_sizes(kwargs, match):
    with pytest.raises(CheckpointError) as err:
        attnzoo.build_model("resnet18", **kwargs)
    assert match in _one_line(err)


def test_create_attention_refuses_impossible_channels():
    for channels in (0, -8, 10**7, 3.5):
        with pytest.raises(SurgeryError, match="channels=") as err:
            attnzoo.create_attention("se", channels)
        _one_line(err)
    assert isinstance(attnzoo.create_attention("se", 64), nn.Module)


def test_unknown_model_names_suggest_the_close_name():
    with pytest.raises(AttnzooError, match="did you mean resnet18_cbam") as err:
        attnzoo.build_model("resnet18_cbma")
    _one_line(err)
