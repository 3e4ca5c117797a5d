"""charseq's forward and backward pass against PyTorch autograd on the same weights.

PyTorch is an optional reference (`pip install torch==2.13.0`); without it this skips.
"""

import numpy as np
import pytest

from charseq import VanillaRNN
from charseq.model import PARAM_NAMES

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("B,T,V,H", [(1, 1, 5, 3), (3, 7, 11, 8), (4, 16, 300, 6)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_loss_state_and_every_gradient_match_autograd(B, T, V, H, with_h0):
    rng = np.random.default_rng(B * 100 + T)
    model = VanillaRNN(V, H, seed=1, dtype=np.float64)
    for name in PARAM_NAMES:  # every parameter non-zero, biases included
        model.params[name] = rng.normal(0, 0.5, model.params[name].shape)
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    h0 = rng.normal(0, 0.5, (B, H)) if with_h0 else None

    loss, grads, h_last = model.loss_and_grads(x, y, h0)

    p = {name: torch.tensor(np.array(model.params[name]), requires_grad=True) for name in PARAM_NAMES}
    rnn = torch.nn.RNN(V, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():  # the seed's U, W, b as nn.RNN's weights; the bias lives in b_ih
        rnn.weight_ih_l0.copy_(p["U"])
        rnn.weight_hh_l0.copy_(p["W"])
        rnn.bias_ih_l0.copy_(p["b"])
        rnn.bias_hh_l0.zero_()
    one_hot = torch.nn.functional.one_hot(torch.tensor(x), V).to(torch.float64)
    h0_t = torch.zeros(1, B, H, dtype=torch.float64) if h0 is None else torch.tensor(h0)[None]
    states, h_t = rnn(one_hot, h0_t)
    logits = states @ p["V"].T + p["c"]
    torch_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(y).reshape(-1))
    torch_loss.backward()
    expected = {"U": rnn.weight_ih_l0.grad, "W": rnn.weight_hh_l0.grad, "b": rnn.bias_ih_l0.grad,
                "V": p["V"].grad, "c": p["c"].grad}

    assert abs(loss - torch_loss.item()) < 1e-6
    np.testing.assert_allclose(h_last, h_t[0].detach().numpy(), atol=1e-6, rtol=0)
    for name in PARAM_NAMES:
        np.testing.assert_allclose(grads[name], expected[name].numpy(), atol=1e-6, rtol=0, err_msg=name)
    # far tighter than required: the two agree to rounding
    assert max(np.abs(grads[n] - expected[n].numpy()).max() for n in PARAM_NAMES) < 1e-12
