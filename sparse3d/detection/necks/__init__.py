"""Necks: dense BEV networks between a 3D encoder's BEV map and the detection head."""
