"""``attnzoo eval`` on Hub models, against the local test Hub."""

from hub_fixtures import hub, hub_server  # noqa: F401

from attnzoo import hub as attnzoo_hub
from attnzoo_cli import main
from attnzoo.models import build_model


def test_hub_model_is_evaluated_and_a_misfit_hub_checkpoint_is_named(hub, capsys):
    attnzoo_hub.push_to_hub(build_model("cnn3_se", num_classes=10, in_chans=1), "lab/cnn3_se-eval")
    assert main(["eval", "hf-hub:lab/cnn3_se-eval", "--no-data", "--runs", "1", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "hf-hub:lab/cnn3_se-eval  1x28x28" in out

    assert main(["eval", "cnn3", "--checkpoint", "hf-hub:lab/cnn3_se-eval", "--no-data"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a cnn3_se model, which does not fit cnn3" in err
