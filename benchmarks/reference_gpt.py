"""The transformer built from torch.nn parts: charseq's parity test checks the loss and every
gradient against it, and benchmarks/speed.py times it beside charseq's, with the same
optimizer. nanoGPT's structure (pre-LayerNorm blocks, GELU's tanh form, a V c head), with
PyTorch's fused scaled_dot_product_attention. PyTorch is optional: importing this without
it fails, and its callers skip."""

import torch


class ReferenceGPT(torch.nn.Module):
    """The transformer from torch.nn parts: embeddings, LayerNorm, Linear, GELU (tanh form)
    and scaled_dot_product_attention(is_causal=True), in float64."""

    def __init__(self, V, E, layers, heads, context):
        super().__init__()
        nn, f64 = torch.nn, torch.float64
        self.heads = heads
        self.wte, self.wpe = nn.Embedding(V, E, dtype=f64), nn.Embedding(context, E, dtype=f64)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            block = nn.Module()
            block.ln_1, block.ln_2 = nn.LayerNorm(E, dtype=f64), nn.LayerNorm(E, dtype=f64)
            block.c_attn, block.attn_proj = nn.Linear(E, 3 * E, dtype=f64), nn.Linear(E, E, dtype=f64)
            block.c_fc, block.mlp_proj = nn.Linear(E, 4 * E, dtype=f64), nn.Linear(4 * E, E, dtype=f64)
            self.blocks.append(block)
        self.ln_f, self.head = nn.LayerNorm(E, dtype=f64), nn.Linear(E, V, dtype=f64)
        self.gelu = nn.GELU(approximate="tanh")

    def load(self, params):
        """charseq's weights, by name."""
        with torch.no_grad():
            self.wte.weight.copy_(torch.tensor(params["wte"]))
            self.wpe.weight.copy_(torch.tensor(params["wpe"]))
            for layer, block in enumerate(self.blocks):
                for ours, theirs in (("ln_1", block.ln_1), ("ln_2", block.ln_2), ("attn.c_attn", block.c_attn),
                                     ("attn.c_proj", block.attn_proj), ("mlp.c_fc", block.c_fc),
                                     ("mlp.c_proj", block.mlp_proj)):
                    theirs.weight.copy_(torch.tensor(params[f"h{layer}.{ours}.weight"]))
                    theirs.bias.copy_(torch.tensor(params[f"h{layer}.{ours}.bias"]))
            self.ln_f.weight.copy_(torch.tensor(params["ln_f.weight"]))
            self.ln_f.bias.copy_(torch.tensor(params["ln_f.bias"]))
            self.head.weight.copy_(torch.tensor(params["V"]))
            self.head.bias.copy_(torch.tensor(params["c"]))

    def grads(self):
        """Their gradients under charseq's names."""
        out = {"wte": self.wte.weight.grad, "wpe": self.wpe.weight.grad, "ln_f.weight": self.ln_f.weight.grad,
               "ln_f.bias": self.ln_f.bias.grad, "V": self.head.weight.grad, "c": self.head.bias.grad}
        for layer, block in enumerate(self.blocks):
            for ours, theirs in (("ln_1", block.ln_1), ("ln_2", block.ln_2), ("attn.c_attn", block.c_attn),
                                 ("attn.c_proj", block.attn_proj), ("mlp.c_fc", block.c_fc),
                                 ("mlp.c_proj", block.mlp_proj)):
                out[f"h{layer}.{ours}.weight"], out[f"h{layer}.{ours}.bias"] = theirs.weight.grad, theirs.bias.grad
        return out

    def forward(self, ids):
        B, T = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(T))
        for block in self.blocks:
            q, k, v = block.c_attn(block.ln_1(x)).split(x.shape[-1], dim=-1)
            q, k, v = (t.view(B, T, self.heads, -1).transpose(1, 2) for t in (q, k, v))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + block.attn_proj(y.transpose(1, 2).reshape(B, T, -1))
            x = x + block.mlp_proj(self.gelu(block.c_fc(block.ln_2(x))))
        return self.head(self.ln_f(x))


@torch.no_grad()
def generate_recomputing(model: ReferenceGPT, length: int, context: int) -> torch.Tensor:
    """nanoGPT's generate: at every character the whole context (its last `context`
    characters) is read again, sampling from the last position's softmax."""
    ids = torch.zeros((1, 1), dtype=torch.long)
    for _ in range(length):
        logits = model(ids[:, -context:])[:, -1]
        ids = torch.cat([ids, torch.multinomial(torch.softmax(logits, dim=-1), 1)], dim=1)
    return ids
