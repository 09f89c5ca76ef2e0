"""File input/output shared by every layer: atomic writes (temporary file + rename) and
JSON / YAML reading whose errors name the file and the field."""
