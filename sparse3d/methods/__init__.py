"""Trainable methods (config + model each), registered as `sparse3d.methods` entry points."""
