"""Greedy decoding from a `charseq export` file with onnxruntime and numpy alone:
python onnx_greedy.py MODEL.onnx PRIME LENGTH prints what
`charseq generate CHECKPOINT --prime PRIME --length LENGTH --sampler argmax` prints."""
import json
import sys

import numpy as np
import onnxruntime as ort

path, prime, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
symbols = json.loads(meta["charseq.vocabulary"])
shape = [1 if dim == "batch" else dim for dim in session.get_inputs()[1].shape]  # (layers, 1, width)
state, text = np.zeros(shape, np.float32), prime
# A transformer carries nothing (its state is empty): each call reads its context whole,
# which keeps its last half when it is full, as charseq's key/value cache does.
context = json.loads(meta["charseq.model_options"]).get("context") if state.size == 0 else None
window, ids = [], [symbols.index(c) for c in prime]
for _ in range(length):
    if context:
        for i in ids:
            window = (window[len(window) - context // 2:] if len(window) == context else window) + [i]
        logits, _ = session.run(None, {"ids": np.array([window], np.int64), "state": state})
    else:
        logits, state = session.run(None, {"ids": np.array([ids], np.int64), "state": state})  # (1, seq, V)
    ids = [int(logits[0, -1].argmax())]  # the most likely next symbol, fed back
    text += symbols[ids[0]]
print(text)
