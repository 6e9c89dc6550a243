"""The benchmark compares the right models, measures memory correctly and prints ratios to the backbone.

Only correctness is checked here: timings depend on the machine, so no test asserts a speed.
"""

import pytest
import torch

from attnzoo_cli import main
from attnzoo_cli.commands.bench import thread_settings
from attnzoo.errors import UnknownModelError
from attnzoo.evaluate.bench import Setting, candidates, identical_outputs, run_mode, training_peak_bytes
from attnzoo.evaluate.throughput import peak_allocated


def test_candidates_are_backbone_attnzoo_model_and_timms_equivalent():
    assert [c.label for c in candidates("resnet50_se")] == ["resnet50", "resnet50_se", "timm seresnet50"]
    assert [c.role for c in candidates("resnet50_cbam")] == ["backbone", "attnzoo", "timm"]
    assert [c.label for c in candidates("mobilenetv2_100_cbam")] == ["mobilenetv2_100", "mobilenetv2_100_cbam"]


def test_models_of_one_backbone_share_one_baseline_and_each_gets_its_timm_peer():
    labels = [c.label for c in candidates(["resnet18_se", "resnet18_cbam"])]
    assert labels == ["resnet18", "resnet18_se", "timm seresnet18", "resnet18_cbam", "timm resnet18 + CbamModule"]
    with pytest.raises(UnknownModelError, match="different backbones"):
        candidates(["resnet18_se", "resnet34_se"])


def test_unknown_model_names_the_listing_command():
    with pytest.raises(UnknownModelError, match="attnzoo list"):
        candidates("resnet50")


@pytest.mark.parametrize("name", ["resnet18_se", "resnet18_cbam", "resnet18_eca"])
def test_attnzoo_models_compute_the_same_logits_as_timms_modules(name):
    _, ours, theirs = candidates(name)
    assert theirs.pair == ours.label
    assert identical_outputs(ours.build(), theirs.build(), torch.randn(2, 3, 64, 64)) < 1e-5


def test_peak_allocated_sees_a_temporary_buffer():
    def fn():
        a = torch.ones(2**20)  # 4 MiB, freed before b
        del a
        torch.ones(2**18)

    assert 4 * 2**20 <= peak_allocated(fn) < 5 * 2**20


def test_training_peak_counts_weights_gradients_and_momentum():
    model = torch.nn.Linear(1000, 1000)
    model.num_classes = 1000
    weights = sum(p.nbytes for p in model.parameters())
    # weights + momentum resident, gradients allocated during the step
    assert training_peak_bytes(model, torch.randn(4, 1000)) >= 3 * weights


def test_cbam_adds_at_most_10_percent_to_training_memory():
    (table,) = run_mode(["resnet18_cbam"], "memory", Setting(train_batch=32, train_size=64), "")  # thread-free
    assert [row.label for row in table.rows][:2] == ["resnet18", "resnet18_cbam"]
    assert table.rows[0].ratio == 1.0
    assert table.rows[1].ratio <= 1.10


def test_bench_command_prints_ratio_tables_and_logs_them(tmp_path, capsys):
    log = tmp_path / "bench.txt"
    code = main(["bench", "resnet18_se", "--modes", "eager,train", "--infer-size", "32", "--infer-batch", "2",
                 "--train-size", "32", "--train-batch", "2", "--rounds", "2", "--iters", "1", "--threads", "1",
                 "--log", str(log)])
    out = capsys.readouterr().out
    assert code == 0
    assert "timm seresnet18" in out and "wall-clock time" in out
    assert out.count("inference, eager fp32, batch 2 at 32x32, 1 thread(s)") == 1
    assert out.count("training step (fwd + bwd + SGD), batch 2 at 32x32, 1 thread(s)") == 1
    assert log.read_text().strip() == out.strip()


def test_bench_measures_each_thread_setting_in_one_run_and_names_the_clock(capsys):
    code = main(["bench", "resnet18_se", "--modes", "eager", "--infer-size", "32", "--infer-batch", "2",
                 "--rounds", "1", "--iters", "1", "--threads", "2,1", "--clock", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "process CPU time (summed over all threads" in out
    tables = [out.index(f"batch 2 at 32x32, {n} thread(s)") for n in (2, 1)]
    assert tables[0] < tables[1]
    assert out.count("\n  resnet18_se  ") == 2  # one row per table


def test_bench_default_measures_torchs_default_and_one_thread():
    parser_default = Setting().threads
    assert parser_default == (None, 1)
    assert thread_settings("default,1") == (None, 1) and thread_settings("1,1") == (1,)


def test_bench_command_rejects_a_bad_thread_setting(capsys):
    assert main(["bench", "resnet18_se", "--threads", "default,0"]) == 2
    assert "--threads default,0: must be at least 1 thread per setting, or 'default' (got '0')" in capsys.readouterr().err


def test_bench_command_rejects_an_unknown_mode(capsys):
    assert main(["bench", "resnet18_se", "--modes", "eager,warp"]) == 2
    assert "unknown --modes warp" in capsys.readouterr().err


def test_profile_option_lists_the_top_operators_of_every_candidate(capsys):
    code = main(["bench", "resnet18_se", "--modes", "eager", "--profile", "3", "--infer-size", "32",
                 "--infer-batch", "2", "--iters", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0
    for label in ("resnet18: total", "resnet18_se: total", "timm seresnet18: total"):
        assert label in out
    assert "aten::mkldnn_convolution" in out
