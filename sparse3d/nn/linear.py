"""``nn.Linear`` with outputs and gradients that do not depend on the thread count."""

from torch import Tensor, nn

from sparse3d.core.linear import linear


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state-dict names) computed by
    :func:`sparse3d.core.linear.linear`. Input float [..., in_features] -> [..., out_features]."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
