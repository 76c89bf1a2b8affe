"""Loading the digits of the Devanagari Handwritten Character Dataset (DHCD).

Two sources are understood:

* the bundled file ``dhcd_digits.npz`` (arrays ``x_train``, ``y_train``, ``x_test``,
  ``y_test``; uint8, 32x32), checked against the SHA-256 of each array. It is installed with
  the package, as ``bnlib/_data/dhcd_digits.npz`` beside its README (source, licence CC BY 4.0,
  checksums); in the repository it is ``data/dhcd_digits.npz``, which setup.py maps there;
* a folder in the original dataset's layout, ``Train/digit_k/*.png`` and ``Test/digit_k/*.png``
  for k = 0..9, as downloaded from the UCI repository.

Either way :func:`load_hindi_digits` returns ``(images, labels)``: a float32 tensor
``(N, 1, 32, 32)`` with pixel values in [0, 1] (white stroke on black) and an int64 tensor
``(N,)`` of class indices 0..9.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made, so the constants load light
    import torch

__all__ = [
    "ARRAY_SHA256",
    "CLASS_NAMES",
    "DataError",
    "IMAGE_SIZE",
    "SPLIT_SIZES",
    "bundled_data_file",
    "default_data_file",
    "load_hindi_digits",
    "read_png_folder",
]

#: The Devanagari numerals, indexed by label (label k is the original folder ``digit_k``).
CLASS_NAMES = ("०", "१", "२", "३", "४", "५", "६", "७", "८", "९")
IMAGE_SIZE = 32
SPLIT_SIZES = {"train": 17_000, "test": 3_000}

#: SHA-256 of each array's raw C-order bytes in the bundled file (see data/README.md).
ARRAY_SHA256 = {
    "x_train": "54e66989d165acc82dcf2d3c9934ea3831437cd3185c82dee5f5d3e0439d7fd0",
    "y_train": "094f35bc4bb2a964aa0560a152b70f3e839d56c96fe5d29cbda34ba58ce2f637",
    "x_test": "075043003acdc75d3af957d9a90bf8f9a583636595ece80993cb413cbe58690a",
    "y_test": "46344ee0505619dd08f4b2617071eafbbb449fb88baad2ad34d003e40bd6613f",
}

_FOLDER_OF_SPLIT = {"train": "Train", "test": "Test"}
_ENV_VAR = "BNLIB_DATA"
_FILE_NAME = "dhcd_digits.npz"


class DataError(ValueError):
    """The data is missing, damaged or not in the expected layout (the message says how to fix it)."""


def bundled_data_file(name: str = _FILE_NAME) -> Path:
    """A file installed with bnlib: ``bnlib/_data/<name>`` (default: the digits).

    Every file of the repository's ``data/`` folder is installed there: a wheel holds a copy, an
    editable install maps ``bnlib._data`` to ``data/`` itself, and a clone imported without
    installing falls back to ``data/`` directly. The path is returned whether or not it exists.
    """
    try:
        folder = importlib.resources.files("bnlib._data")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "data" / name
    return Path(str(folder / name))


def default_data_file() -> Path:
    """Where the digits are looked for: ``$BNLIB_DATA`` if set, else :func:`bundled_data_file`."""
    if os.environ.get(_ENV_VAR):
        return Path(os.environ[_ENV_VAR]).expanduser()
    return bundled_data_file()


def load_hindi_digits(
    split: str, source: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of the DHCD digits.

    Args:
        split: ``"train"`` (17,000 images) or ``"test"`` (3,000 images).
        source: the ``.npz`` file or a folder in the original ``Train/digit_k/*.png`` layout.
            Default: :func:`default_data_file`.

    Returns:
        ``(images, labels)``: float32 ``(N, 1, 32, 32)`` in [0, 1], and int64 ``(N,)`` in 0..9.
        Fresh tensors on every call, so callers may modify them.

    Raises:
        DataError: unknown split, missing or corrupted file, or a folder with missing classes,
            unreadable images or images of the wrong size.
    """
    if split not in SPLIT_SIZES:
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    path = Path(source).expanduser() if source is not None else default_data_file()
    if path.is_dir():
        images, labels = _cached_png_folder(str(path.resolve()), split)
    elif path.is_file():
        images, labels = _cached_npz(str(path.resolve()), split)
    else:
        raise DataError(
            f"no digits data at {path}. The file ships with bnlib: reinstall it from the "
            f"book's repository (pip install .), or set {_ENV_VAR} to a copy of the "
            "repository's data/dhcd_digits.npz, or pass source= a folder holding the "
            "original dataset's Train/ and Test/ folders (digit_0 .. digit_9 inside each)."
        )
    return _to_tensors(images, labels)


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 32, 32) and labels -> float32 (N, 1, 32, 32) in [0, 1] and int64 (N,)."""
    import torch

    x = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


@functools.lru_cache(maxsize=4)
def _cached_npz(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    x_key, y_key = f"x_{split}", f"y_{split}"
    try:
        with np.load(path) as archive:
            missing = {x_key, y_key} - set(archive.files)
            if missing:
                raise DataError(
                    f"{path} has no array(s) {sorted(missing)}; expected x_train, y_train, "
                    "x_test, y_test. Replace it with data/dhcd_digits.npz from the repository."
                )
            images, labels = archive[x_key], archive[y_key]
    except DataError:
        raise
    except Exception as error:  # zipfile.BadZipFile, EOFError, ValueError, OSError...
        raise DataError(
            f"cannot read {path} as a NumPy .npz archive ({type(error).__name__}: {error}). "
            "The file is damaged or not the digits file: restore data/dhcd_digits.npz from "
            "the repository (git checkout -- data/dhcd_digits.npz)."
        ) from error
    for key, array in ((x_key, images), (y_key, labels)):
        digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
        if digest != ARRAY_SHA256[key]:
            raise DataError(
                f"checksum mismatch for {key} in {path}: sha256 {digest[:16]}..., expected "
                f"{ARRAY_SHA256[key][:16]}... The file is corrupted or modified: restore "
                "data/dhcd_digits.npz from the repository (git checkout -- data/dhcd_digits.npz)."
            )
    return images, labels


@functools.lru_cache(maxsize=4)
def _cached_png_folder(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    return read_png_folder(Path(root), split)


def read_png_folder(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``root/Train`` or ``root/Test`` in the original DHCD layout.

    Returns uint8 images ``(N, 32, 32)`` and uint8 labels ``(N,)``, ordered by class and then by
    the numeric value of the file name (the order of the bundled file). Only the structure is
    checked, not checksums: a partial or extended copy of the dataset loads if it is well formed.
    """
    from PIL import Image  # a dependency of matplotlib; imported here as only folders need it

    split_dir = root / _FOLDER_OF_SPLIT[split]
    if not split_dir.is_dir():
        raise DataError(
            f"{root} has no {_FOLDER_OF_SPLIT[split]}/ folder. A DHCD folder holds Train/ and "
            "Test/, each with digit_0 .. digit_9 inside (the layout of the original download)."
        )
    missing = [f"digit_{k}" for k in range(10) if not (split_dir / f"digit_{k}").is_dir()]
    if missing:
        raise DataError(
            f"{split_dir} lacks the class folder(s) {', '.join(missing)}: all ten, digit_0 .. "
            "digit_9, are needed. Download the whole dataset again, or point to the .npz file."
        )
    images, labels = [], []
    for k in range(10):
        files = sorted((split_dir / f"digit_{k}").glob("*.png"), key=_numeric_name)
        if not files:
            raise DataError(f"{split_dir / f'digit_{k}'} holds no .png images.")
        for file in files:
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert("L"), dtype=np.uint8)
            except Exception as error:
                raise DataError(f"cannot read the image {file}: {error}") from error
            if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE):
                raise DataError(
                    f"{file} is {pixels.shape[1]}x{pixels.shape[0]} pixels; every DHCD image is "
                    f"{IMAGE_SIZE}x{IMAGE_SIZE}. Remove or resize it."
                )
            images.append(pixels)
            labels.append(k)
    return np.stack(images), np.asarray(labels, dtype=np.uint8)


def _numeric_name(path: Path) -> tuple[int, str]:
    """Sort key: file names are numbers (``103277.png``); others go after, alphabetically."""
    return (int(path.stem), "") if path.stem.isdigit() else (1 << 62, path.stem)
