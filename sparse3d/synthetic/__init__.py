"""The data generators: multi-view objects (``objects``), ray-cast LiDAR sweeps
(``lidar``), nuScenes v1.0-format databases (``nuscenes``) and mock submissions
(``nuscenes_mock``). Tests, benchmarks and the demo run on what these make."""
