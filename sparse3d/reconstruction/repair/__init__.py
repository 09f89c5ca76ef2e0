"""Repair models: image-to-image networks, trained on a scene's own corrupted / clean
pairs, that turn a render of an unseen viewpoint into a cleaner image to fit to.

- ``embedded.EmbeddedRepair``: a small U-Net trained from scratch, no weights needed;
- ``diffusion.DiffusionRepair``: a local Stable Diffusion + ControlNet with LoRA adapters
  (peft), GaussianObject's repair model (needs the ``diffusion`` extra).

Every model has the same two methods, so one training loop and one refinement loop
serve them all:

- ``training_loss(corrupted, clean, generator) -> dict[str, Tensor]``: named scalar
  losses of a batch of pairs (float [B, H, W, 3] in [0, 1]), whose sum is minimised;
- ``repair(images, generator) -> (images, weights)``: float [B, H, W, 3] repaired images
  in [0, 1] and float [B] their weights in the repair loss.

Every random draw comes from ``generator`` (a model that draws nothing ignores it), so
results are a function of the seed the caller derives it from.
"""
