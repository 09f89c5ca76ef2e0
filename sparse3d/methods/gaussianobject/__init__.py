"""gaussianobject: sparse-view (about 4 images) object reconstruction with a visual hull,
floater elimination and a repair model (GaussianObject, Yang et al. 2024,
https://arxiv.org/abs/2402.10259).

    sparse3d-train method=gaussianobject data=PATH

runs every stage into the run directory (stages.py lists the artefacts) and refines last
(method.py); rerunning the command resumes inside the stage that was running.
"""

from importlib import resources

from sparse3d.engine.registry import MethodSpecification
from sparse3d.methods.gaussianobject.config import GaussianObjectConfig
from sparse3d.methods.gaussianobject.method import GaussianObject

GaussianObjectConfig._target = GaussianObject

spec = MethodSpecification(
    config_type=GaussianObjectConfig,
    description="GaussianObject: 4-view object reconstruction (visual hull, floater elimination, repair model).",
    defaults=resources.files("sparse3d.configs") / "gaussianobject.yaml",
    presets={"gpu": resources.files("sparse3d.configs") / "gaussianobject_gpu.yaml"},
)
