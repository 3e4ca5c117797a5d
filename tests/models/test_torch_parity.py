"""charseq's forward and backward pass against PyTorch autograd on the same weights.

PyTorch is an optional reference (`pip install torch==2.13.0`); without it this skips.
"""

from pathlib import Path

import numpy as np
import pytest

from charseq import VanillaRNN
from charseq.models.rnn import PARAM_NAMES

torch = pytest.importorskip("torch")
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"  # the transformer's reference lives there


@pytest.mark.parametrize("B,T,V,H", [(1, 1, 5, 3), (3, 7, 11, 8), (4, 16, 300, 6)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_loss_state_and_every_gradient_match_autograd(B, T, V, H, with_h0):
    rng = np.random.default_rng(B * 100 + T)
    model = VanillaRNN(V, H, seed=1, dtype=np.float64)
    for name in PARAM_NAMES:  # every parameter non-zero, biases included
        model.params[name] = rng.normal(0, 0.5, model.params[name].shape)
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    h0 = rng.normal(0, 0.5, (1, B, H)) if with_h0 else None  # (layers, B, H)

    loss, grads, h_last = model.loss_and_grads(x, y, h0)

    p = {name: torch.tensor(np.array(model.params[name]), requires_grad=True) for name in PARAM_NAMES}
    rnn = torch.nn.RNN(V, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():  # the seed's U, W, b as nn.RNN's weights; the bias lives in b_ih
        rnn.weight_ih_l0.copy_(p["U"])
        rnn.weight_hh_l0.copy_(p["W"])
        rnn.bias_ih_l0.copy_(p["b"])
        rnn.bias_hh_l0.zero_()
    one_hot = torch.nn.functional.one_hot(torch.tensor(x), V).to(torch.float64)
    h0_t = torch.zeros(1, B, H, dtype=torch.float64) if h0 is None else torch.tensor(h0)
    states, h_t = rnn(one_hot, h0_t)
    logits = states @ p["V"].T + p["c"]
    torch_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(y).reshape(-1))
    torch_loss.backward()
    expected = {"U": rnn.weight_ih_l0.grad, "W": rnn.weight_hh_l0.grad, "b": rnn.bias_ih_l0.grad,
                "V": p["V"].grad, "c": p["c"].grad}

    assert abs(loss - torch_loss.item()) < 1e-6
    np.testing.assert_allclose(h_last, h_t.detach().numpy(), atol=1e-6, rtol=0)
    for name in PARAM_NAMES:
        np.testing.assert_allclose(grads[name], expected[name].numpy(), atol=1e-6, rtol=0, err_msg=name)
    # far tighter than required: the two agree to rounding
    assert max(np.abs(grads[n] - expected[n].numpy()).max() for n in PARAM_NAMES) < 1e-12


def _relative(ours, theirs):
    theirs = np.asarray(theirs)
    return np.linalg.norm(np.asarray(ours) - theirs) / max(np.linalg.norm(theirs), 1e-300)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("B,T,V,H", [(1, 1, 5, 3), (3, 9, 11, 8), (4, 16, 300, 6)])
def test_stacked_cells_match_pytorchs_nn_modules(kind, layers, B, T, V, H):
    """Weights copied by name into nn.RNN / nn.GRU / nn.LSTM (one-hot inputs, float64):
    the loss, every gradient and the last state agree within 1e-6 relative."""
    import charseq

    rng = np.random.default_rng(B * 1000 + T * 10 + layers)
    model = charseq.get_model(f"{kind}:layers={layers}", V, H, dtype="float64")
    for value in model.params.values():  # every parameter non-zero, biases included
        value[...] = rng.normal(0, 0.5, value.shape)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state = rng.normal(0, 0.5, model.state_shape(B))

    loss, grads, last = model.loss_and_grads(x, y, state)

    module = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind](
        V, H, num_layers=layers, batch_first=True, dtype=torch.float64)
    names = {}  # ours -> theirs; a bias of ours that is their two biases summed goes to bias_ih (bias_hh is 0)
    for k in range(layers):
        ours = {"rnn": (f"U{k or ''}", f"W{k or ''}", f"b{k or ''}", None),
                "gru": (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}"),
                "lstm": (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_l{k}", None)}[kind]
        for mine, theirs in zip(ours, (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}")):
            if mine is not None:
                names[mine] = theirs
        with torch.no_grad():
            for mine, theirs in names.items():
                getattr(module, theirs).copy_(torch.tensor(np.array(model.params[mine])))
            if ours[3] is None:
                getattr(module, f"bias_hh_l{k}").zero_()
    head = {n: torch.tensor(np.array(model.params[n]), requires_grad=True) for n in ("V", "c")}
    one_hot = torch.nn.functional.one_hot(torch.tensor(x), V).to(torch.float64)
    if kind == "lstm":
        initial = (torch.tensor(state[..., :H].copy()), torch.tensor(state[..., H:].copy()))
    else:
        initial = torch.tensor(state)
    states, final = module(one_hot, initial)
    logits = states @ head["V"].T + head["c"]
    torch_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(y).reshape(-1))
    torch_loss.backward()
    expected = {mine: getattr(module, theirs).grad.numpy() for mine, theirs in names.items()}
    expected.update({n: head[n].grad.numpy() for n in head})
    final = torch.cat([final[0], final[1]], dim=-1) if kind == "lstm" else final

    assert set(expected) == set(model.params)
    assert abs(loss - torch_loss.item()) <= 1e-6 * abs(torch_loss.item())
    assert _relative(last, final.detach().numpy()) < 1e-6
    for name, value in expected.items():
        assert _relative(grads[name], value) < 1e-6, name


@pytest.mark.parametrize("layers,heads", [(1, 1), (2, 2), (3, 4)])
@pytest.mark.parametrize("B,T,V,E,C", [(1, 1, 5, 8, 4), (3, 9, 11, 16, 12), (2, 16, 300, 8, 16)])
def test_the_transformer_matches_a_reference_built_from_torch_nn(layers, heads, B, T, V, E, C, monkeypatch):
    """benchmarks/reference_gpt.py, which speed.py times beside charseq's."""
    from charseq.models.transformer import Transformer

    if not BENCHMARKS.is_dir():
        pytest.skip("needs the source checkout")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from reference_gpt import ReferenceGPT

    rng = np.random.default_rng(layers * 7 + T)
    model = Transformer(V, E, seed=1, dtype=np.float64, layers=layers, heads=heads, context=C)
    for value in model.params.values():  # LayerNorms and biases away from their start too
        value += rng.normal(0, 0.3, value.shape)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    loss, grads, state = model.loss_and_grads(x, y)

    reference = ReferenceGPT(V, E, layers, heads, C)
    reference.load(model.params)
    logits = reference(torch.tensor(x))
    torch_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(y).reshape(-1))
    torch_loss.backward()
    expected = reference.grads()

    assert state.shape == (B, 0)
    assert abs(loss - torch_loss.item()) <= 1e-6 * abs(torch_loss.item())
    assert set(expected) == set(grads)
    for name, theirs in expected.items():
        assert _relative(grads[name], theirs.numpy()) < 1e-6, name


@pytest.mark.parametrize("lr,weight_decay", [(0.01, 0.1), (3e-3, 0.5)])
def test_weight_decay_is_adamws_on_the_parts_given(lr, weight_decay):
    """charseq's Adam with --weight-decay against torch.optim.AdamW with the decayed part in a
    group of its own (nanoGPT's: matrices decay, biases do not), float64, over several steps."""
    from charseq.training.optimizers import Adam

    rng = np.random.default_rng(4)
    params = rng.normal(size=12)
    decayed, kept = slice(0, 8), slice(8, 12)
    adam, mine = Adam(12, np.float64, decayed=[decayed], weight_decay=weight_decay), params.copy()
    matrix = torch.tensor(params[decayed], requires_grad=True)
    bias = torch.tensor(params[kept], requires_grad=True)
    adamw = torch.optim.AdamW([{"params": [matrix], "weight_decay": weight_decay},
                               {"params": [bias], "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(5):
        grads = rng.normal(size=12)
        adam.step(mine, grads.copy(), lr)
        matrix.grad, bias.grad = torch.tensor(grads[decayed]), torch.tensor(grads[kept])
        adamw.step()
    np.testing.assert_allclose(mine, np.concatenate([matrix.detach().numpy(), bias.detach().numpy()]), rtol=1e-10)
    plain, undecayed = Adam(12, np.float64), params.copy()
    for _ in range(5):
        plain.step(undecayed, rng.normal(size=12), lr)
    assert not np.allclose(undecayed[decayed], mine[decayed])  # the comparison can fail
