"""Central differences: the float64 gradient every model's backward pass is checked against."""

from collections.abc import Callable, Mapping

import numpy as np


def central_differences(loss: Callable[[], float], params: Mapping[str, np.ndarray],
                        eps: float = 1e-5) -> dict[str, np.ndarray]:
    """(loss(p + eps) - loss(p - eps)) / 2 eps for every element of every array in `params`,
    each moved in place and put back. `loss` must draw any randomness afresh per call."""
    numerical = {}
    for name, param in params.items():
        grad = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + eps
            plus = loss()
            param[index] = saved - eps
            minus = loss()
            param[index] = saved
            grad[index] = (plus - minus) / (2 * eps)
        numerical[name] = grad
    return numerical
