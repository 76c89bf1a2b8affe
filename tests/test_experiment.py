"""bnlib.experiment: the command line (bad options, a tiny real run) and its table."""

import csv
import math
import os

import pytest

from bnlib import experiment


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
        (["--train-subset", "999999"], "at most 17,000"),
        (["--test-subset", "50000"], "at most 3,000"),
        (["--train-subset", "17001"], "--train-subset"),
        (["--test-subset", "3001"], "--test-subset"),
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


def test_the_whole_splits_are_accepted_as_subsets():
    args = experiment.build_parser().parse_args(["--train-subset", "17000", "--test-subset", "3000"])
    assert (args.train_subset, args.test_subset) == (17_000, 3_000)
