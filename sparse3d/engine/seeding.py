"""Seeds derived from (run seed, step), so that every step's randomness is fixed by its
number alone: a resumed run draws exactly what an uninterrupted run would have drawn."""

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (e.g. run seed and step)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0]) >> 1


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator for the random choices of one training step."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, step))
