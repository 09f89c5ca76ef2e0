"""Sparse-view reconstruction building blocks: visual hull, floater elimination, leave-one-out noise, novel-view sampling, repair models."""
