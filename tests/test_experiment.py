"""bnlib.experiment: the command line (bad options, a tiny real run) and the findings' measures."""

import csv
import math
import os

import pytest

from bnlib import experiment
from bnlib.training import EpochRecord, History, RunConfig


@pytest.mark.parametrize(
    "options, message",
    [
        (["--epochs", "-1"], "--epochs"),
        (["--epochs", "two"], "--epochs"),
        (["--seeds", "0"], "--seeds"),
        (["--lr", "0"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--batch-size", "0"], "--batch-size"),
        (["--workers", "0"], "--workers"),
        (["--train-subset", "-5"], "--train-subset"),
        (["--test-subset", "0"], "--test-subset"),
        (["--colour", "red"], "unrecognized"),
    ],
)
def test_bad_options_exit_2_with_a_message(options, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        experiment.main(options + ["--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_dir(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SystemExit) as exit_info:
        experiment.main(["--out", str(locked / "results")])
    assert exit_info.value.code == 2
    assert "cannot write" in capsys.readouterr().err


def test_out_dir_that_is_a_file(tmp_path, capsys):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("a file, not a folder")
    with pytest.raises(SystemExit) as exit_info:
        experiment.main(["--out", str(not_a_folder), "--epochs", "1"])
    assert exit_info.value.code == 2
    assert "cannot write" in capsys.readouterr().err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        experiment.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--epochs", "--seeds", "--out", "--lr", "--batch-size", "--train-subset",
                   "--test-subset", "--workers", "--no-cache", "--quiet"):
        assert option in text


def test_tiny_real_run_writes_csv_and_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    code = experiment.main(["--epochs", "1", "--seeds", "2", "--train-subset", "64", "--test-subset", "100",
                            "--workers", "1", "--quiet", "--out", str(out)])
    assert code == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["model"], int(r["seed"]), int(r["epoch"])) for r in rows] == [
        ("with_bn", 5842, 1), ("with_bn", 5843, 1), ("without_bn", 5842, 1), ("without_bn", 5843, 1)
    ]
    for column in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds"):
        assert all(math.isfinite(float(r[column])) for r in rows)
    for name in ("accuracy.png", "train_loss.png", "descent_path.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def fake_history(test_accuracy, train_loss=None, path=None) -> History:
    """A history with given per-epoch numbers (for the measures, no training)."""
    train_loss = train_loss or [1.0] * len(test_accuracy)
    path = path or [[0.0, 0.0]] * (len(test_accuracy) + 1)
    epochs = [
        EpochRecord(epoch=i + 1, train_loss=loss, train_accuracy=0.5, test_loss=1.0,
                    test_accuracy=acc, seconds=1.0, weights=list(path[i + 1]))
        for i, (acc, loss) in enumerate(zip(test_accuracy, train_loss))
    ]
    return History(config=RunConfig(epochs=len(epochs)), epochs=epochs,
                   initial={"weights": list(path[0])})


def test_oscillation_by_hand():
    assert experiment.oscillation(fake_history([0.90, 0.94, 0.92, 0.93])) == pytest.approx(
        (0.04 + 0.02 + 0.01) / 3
    )
    assert experiment.oscillation(fake_history([0.5])) == 0.0


def test_turning_angle_by_hand():
    straight = fake_history([0.5] * 3, path=[[0, 0], [1, 1], [2, 2], [3, 3]])
    assert experiment.mean_turning_angle(straight) == pytest.approx(0.0, abs=1e-12)
    zigzag = fake_history([0.5] * 3, path=[[0, 0], [1, 0], [1, 1], [2, 1]])  # left, right: 90 each
    assert experiment.mean_turning_angle(zigzag) == pytest.approx(90.0)
    back = fake_history([0.5] * 2, path=[[0, 0], [1, 0], [0, 0]])
    assert experiment.mean_turning_angle(back) == pytest.approx(180.0)
    assert math.isnan(experiment.mean_turning_angle(fake_history([0.5])))


def test_loss_lower_from():
    bn = fake_history([0.5] * 5, train_loss=[2.0, 1.0, 0.5, 0.6, 0.4])
    plain = fake_history([0.5] * 5, train_loss=[1.5, 1.2, 0.6, 0.5, 0.5])
    assert experiment.loss_lower_from(bn, plain) == 5  # lower at 2-3, not 4, again at 5
    assert experiment.loss_lower_from(plain, bn) is None
    assert experiment.loss_lower_from(bn, fake_history([0.5] * 5, train_loss=[3.0] * 5)) == 1


def test_seeds_and_configs():
    assert experiment.seeds(3) == [5842, 5843, 5844]
    plan = experiment.comparison_configs(epochs=2, seed_count=2)
    assert [(name, seed) for name, seed, _ in plan] == [
        ("with_bn", 5842), ("with_bn", 5843), ("without_bn", 5842), ("without_bn", 5843)
    ]
    config = plan[0][2]
    assert (config.optimizer, config.lr, config.momentum, config.batch_size) == ("sgd", 0.001, 0.0, 32)
    assert config.kwargs == {"batch_norm": True}


def test_drops_path_length_and_per_seed_by_hand():
    history = fake_history([0.90, 0.85, 0.95, 0.94], path=[[0, 0], [3, 4], [3, 4], [3, 5], [0, 1]])
    assert experiment.drops(history) == 2
    assert experiment.path_length(history) == pytest.approx(5 + 0 + 1 + 5)
    other = fake_history([0.5] * 4, train_loss=[2.0] * 4)
    rows = experiment.per_seed({"with_bn": [history], "without_bn": [other]})
    assert rows[0]["loss_lower_from"] == 1 and "loss_lower_from" not in rows[1]
    assert rows[0]["drops"] == 2 and rows[1]["final_accuracy"] == 0.5
    text = experiment.table(rows, {"model": "", "drops": "d"}).splitlines()
    assert text[0].split() == ["model", "drops"] and text[1].split() == ["with_bn", "2"]
