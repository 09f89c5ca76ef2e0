"""GaussianObject-style split files: ``sparse_<k>.txt`` (k training views) and
``sparse_test.txt`` (held-out views), one view index per line, indices into the data
set's view order (ordered by image name)."""

from pathlib import Path

import torch
from torch import Tensor

from sparse3d.io.atomic import write_text_atomic


def read_split_file(path: Path, num_views: int) -> Tensor:
    """int64 [K] indices listed in ``path``, each checked to lie in [0, num_views)."""
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    indices = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            index = int(line)
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: expected one view index per line, got {line!r}") from err
        if not 0 <= index < num_views:
            raise ValueError(f"{path}:{lineno}: view index {index} is outside [0, {num_views})")
        indices.append(index)
    return torch.tensor(indices, dtype=torch.int64)


def write_split_file(path: Path, indices: list[int]) -> None:
    """Writes ``indices`` one per line, atomically."""
    write_text_atomic(path, "".join(f"{i}\n" for i in indices))


def sparse_split(root: Path, num_train_views: int, num_views: int) -> tuple[Tensor, Tensor]:
    """(train, test) int64 indices from ``root/sparse_<num_train_views>.txt`` and
    ``root/sparse_test.txt`` (test = every other view when that file is absent)."""
    train = read_split_file(Path(root) / f"sparse_{num_train_views}.txt", num_views)
    test_file = Path(root) / "sparse_test.txt"
    if test_file.is_file():
        test = read_split_file(test_file, num_views)
    else:
        test = torch.tensor([i for i in range(num_views) if i not in set(train.tolist())], dtype=torch.int64)
    overlap = set(train.tolist()) & set(test.tolist())
    if overlap:
        raise ValueError(
            f"{root}: views {sorted(overlap)} are in both sparse_{num_train_views}.txt and sparse_test.txt"
        )
    return train, test
