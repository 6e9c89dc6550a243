"""Time how long loading a tag's Hub weights takes to fail when the Hub cannot be reached, cold cache.

Usage: ``python scripts/hub_failure_time.py > results/hub/unreachable_load.txt`` (about 75 s; nothing is
downloaded: the endpoint is a closed port on 127.0.0.1). Compares timm's own loader
(``timm.models.load_pretrained``), with and without a pinned safetensors file, with attnzoo's
(``attnzoo.models.pretrained.load_pretrained_weights``), on the same cfg and model.
"""

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def closed_port_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# the client reads these once, at import
os.environ.update(HF_ENDPOINT=closed_port_endpoint(), HF_HOME=tempfile.mkdtemp(), HF_HUB_DISABLE_XET="1",
                  HF_HUB_OFFLINE="0", HF_HUB_DISABLE_PROGRESS_BARS="1")

import timm  # noqa: E402
from timm.models import load_pretrained  # noqa: E402

from attnzoo.models.pretrained import load_pretrained_weights  # noqa: E402


def attempt(label: str, load) -> None:
    start = time.perf_counter()
    try:
        load()
        outcome = "loaded (unexpected)"
    except Exception as err:  # noqa: BLE001 - the point is which error, and when
        lines = str(err).strip().splitlines() or [""]
        more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
        outcome = f"{type(err).__name__}: {lines[0]}{more}"
    print(f"{label}\n  failed after {time.perf_counter() - start:.1f} s with {outcome}\n", flush=True)


def main() -> None:
    print("$ python scripts/hub_failure_time.py > results/hub/unreachable_load.txt")
    print(f"HF_ENDPOINT={os.environ['HF_ENDPOINT']} (nothing listens there), empty cache; timm {timm.__version__}")
    print()
    model = timm.create_model("resnet18_se", num_classes=10)
    cfg = dict(architecture="resnet18_se", tag="demo", hf_hub_id="attnzoo/resnet18_se.demo", num_classes=10)
    attempt("timm's load_pretrained, no hf_hub_filename (tries model.safetensors, then pytorch_model.bin)",
            lambda: load_pretrained(model, cfg, num_classes=10))
    pinned = dict(cfg, hf_hub_filename="model.safetensors")
    attempt("timm's load_pretrained, hf_hub_filename='model.safetensors'",
            lambda: load_pretrained(model, pinned, num_classes=10))
    attempt("attnzoo's load_pretrained_weights (what attnzoo's registered names use)",
            lambda: load_pretrained_weights(model, pinned, num_classes=10, in_chans=3))


if __name__ == "__main__":
    main()
