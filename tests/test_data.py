"""bnlib.data: the bundled file, a PNG folder in the original layout, and every bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bnlib.data import DataError, bundled_data_file, default_data_file, load_hindi_digits

DATA_FILE = default_data_file()


def write_png_tree(root: Path, images_per_class: int = 2, size: int = 32) -> dict:
    """A tiny DHCD-shaped folder; returns {(split, class): [uint8 arrays in file order]}."""
    rng = np.random.default_rng(0)
    written = {}
    for split in ("Train", "Test"):
        for k in range(10):
            folder = root / split / f"digit_{k}"
            folder.mkdir(parents=True)
            arrays = []
            # Names chosen so that numeric order (2, 10) differs from alphabetical ("10" < "2").
            for number in (10, 2, 300)[:images_per_class]:
                pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{number}.png")
                arrays.append((number, pixels))
            written[(split, k)] = [p for _, p in sorted(arrays, key=lambda item: item[0])]
    return written


# --- the bundled file -------------------------------------------------------------------------


@pytest.mark.parametrize("split, size", [("train", 17_000), ("test", 3_000)])
def test_bundled_file_shapes_types_and_range(split, size):
    images, labels = load_hindi_digits(split)
    assert images.shape == (size, 1, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (size,) and labels.dtype == torch.int64
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    # Balanced classes, as documented in data/README.md.
    assert torch.equal(torch.bincount(labels), torch.full((10,), size // 10))


def test_bundled_file_matches_the_raw_arrays_scaled_to_unit_range():
    raw = np.load(DATA_FILE)
    images, labels = load_hindi_digits("test")
    np.testing.assert_array_equal((images[:, 0].numpy() * 255).round().astype(np.uint8), raw["x_test"])
    np.testing.assert_array_equal(labels.numpy(), raw["y_test"])


def test_border_is_black_as_documented():
    images, _ = load_hindi_digits("test")
    assert float(images[..., :2, :].abs().max()) == 0.0
    assert float(images[..., :, -2:].abs().max()) == 0.0


def test_each_call_returns_fresh_tensors():
    images, _ = load_hindi_digits("test")
    images.zero_()
    again, _ = load_hindi_digits("test")
    assert float(again.max()) == 1.0


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["training", "Train", "", "val"])
def test_unknown_split_is_rejected(split):
    with pytest.raises(DataError, match="unknown split.*'train' or 'test'"):
        load_hindi_digits(split)


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="no digits data.*dhcd_digits.npz"):
        load_hindi_digits("train", tmp_path / "nowhere.npz")


def test_bundled_file_is_the_package_data_of_bnlib(monkeypatch):
    """bnlib._data is the repository's data/ in an editable install, bnlib/_data in a wheel."""
    import bnlib._data

    monkeypatch.delenv("BNLIB_DATA", raising=False)
    folder = Path(bnlib._data.__file__).parent
    assert bundled_data_file() == folder / "dhcd_digits.npz" == default_data_file()
    assert bundled_data_file("README.md") == folder / "README.md"
    assert "CC BY 4.0" in bundled_data_file("README.md").read_text(encoding="utf-8")


def test_uninstalled_clone_falls_back_to_the_repository_data_folder(monkeypatch):
    import importlib.resources

    def not_installed(package):
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(importlib.resources, "files", not_installed)
    repository_data = Path(__file__).resolve().parent.parent / "data" / "dhcd_digits.npz"
    assert bundled_data_file() == repository_data


def test_environment_variable_points_to_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("BNLIB_DATA", str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="missing.npz"):
        load_hindi_digits("test")


def test_truncated_file_is_reported_as_damaged(tmp_path):
    broken = tmp_path / "dhcd_digits.npz"
    broken.write_bytes(DATA_FILE.read_bytes()[: 100_000])
    with pytest.raises(DataError, match="damaged"):
        load_hindi_digits("train", broken)


def test_modified_pixels_fail_the_checksum(tmp_path):
    raw = dict(np.load(DATA_FILE))
    raw["x_test"] = raw["x_test"].copy()
    raw["x_test"][0, 16, 16] ^= 1
    tampered = tmp_path / "tampered.npz"
    np.savez_compressed(tampered, **raw)
    with pytest.raises(DataError, match="checksum mismatch for x_test"):
        load_hindi_digits("test", tampered)
    # The untouched split of the same file still loads.
    assert load_hindi_digits("train", tampered)[0].shape[0] == 17_000


def test_archive_without_the_arrays(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(DataError, match="no array"):
        load_hindi_digits("train", other)


# --- a folder of PNGs in the original layout ---------------------------------------------------


def test_png_folder_is_read_in_class_then_numeric_order(tmp_path):
    written = write_png_tree(tmp_path, images_per_class=3)
    images, labels = load_hindi_digits("test", tmp_path)
    assert images.shape == (30, 1, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == [k for k in range(10) for _ in range(3)]
    expected = np.stack([p for k in range(10) for p in written[("Test", k)]])
    np.testing.assert_allclose(images[:, 0].numpy(), expected / 255.0, rtol=0, atol=1e-7)


def test_png_folder_round_trip_of_real_images(tmp_path):
    raw = np.load(DATA_FILE)
    x, y = raw["x_test"], raw["y_test"]
    for k in range(10):
        folder = tmp_path / "Test" / f"digit_{k}"
        folder.mkdir(parents=True)
        for i, index in enumerate(np.flatnonzero(y == k)[:2]):
            Image.fromarray(x[index], mode="L").save(folder / f"{i}.png")
    images, labels = load_hindi_digits("test", tmp_path)
    bundled, bundled_labels = load_hindi_digits("test")
    picks = [int(i) for k in range(10) for i in np.flatnonzero(y == k)[:2]]
    assert torch.equal(images, bundled[picks]) and torch.equal(labels, bundled_labels[picks])


def test_png_folder_missing_split(tmp_path):
    (tmp_path / "Train").mkdir()
    with pytest.raises(DataError, match="no Test/ folder"):
        load_hindi_digits("test", tmp_path)


def test_png_folder_missing_classes_are_named(tmp_path):
    write_png_tree(tmp_path)
    shutil.rmtree(tmp_path / "Train" / "digit_3")
    shutil.rmtree(tmp_path / "Train" / "digit_7")
    with pytest.raises(DataError, match="digit_3, digit_7"):
        load_hindi_digits("train", tmp_path)


def test_png_folder_empty_class(tmp_path):
    write_png_tree(tmp_path)
    for file in (tmp_path / "Train" / "digit_5").iterdir():
        file.unlink()
    with pytest.raises(DataError, match="digit_5 holds no .png"):
        load_hindi_digits("train", tmp_path)


def test_png_folder_wrong_image_size(tmp_path):
    write_png_tree(tmp_path)
    bad = tmp_path / "Train" / "digit_1" / "99.png"
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8), mode="L").save(bad)
    with pytest.raises(DataError, match=r"99.png is 28x28 pixels.*32x32"):
        load_hindi_digits("train", tmp_path)


def test_png_folder_unreadable_image(tmp_path):
    write_png_tree(tmp_path)
    bad = tmp_path / "Train" / "digit_2" / "5.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read the image .*5.png"):
        load_hindi_digits("train", tmp_path)
