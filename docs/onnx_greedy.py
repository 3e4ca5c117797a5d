"""Greedy decoding from a `charseq export` file with onnxruntime and numpy alone:
python onnx_greedy.py MODEL.onnx PRIME LENGTH prints what
`charseq generate CHECKPOINT --prime PRIME --length LENGTH --sampler argmax` prints."""
import json
import sys

import numpy as np
import onnxruntime as ort

path, prime, length = sys.argv[1], sys.argv[2], int(sys.argv[3])
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
symbols = json.loads(session.get_modelmeta().custom_metadata_map["charseq.vocabulary"])
shape = [1 if dim == "batch" else dim for dim in session.get_inputs()[1].shape]  # (layers, 1, width)
ids, state, text = np.array([[symbols.index(c) for c in prime]], np.int64), np.zeros(shape, np.float32), prime
for _ in range(length):
    logits, state = session.run(None, {"ids": ids, "state": state})  # logits (1, seq, V)
    ids = logits[:, -1:].argmax(axis=-1)  # (1, 1): the most likely next symbol, fed back
    text += symbols[ids[0, 0]]
print(text)
