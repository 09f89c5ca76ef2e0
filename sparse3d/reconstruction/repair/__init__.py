"""Repair models: image-to-image networks, trained on a scene's own corrupted / clean
pairs, that turn a render of an unseen viewpoint into a cleaner image to fit to.

Every model has ``training_loss(corrupted, clean)`` and ``repair(images)``, so one
training loop and one refinement loop serve them all.
"""
