"""The interactive web viewer (a viser app): ``sparse3d-view run=RUN_DIR``."""
