"""`charseq export`: a trained model as an ONNX graph (the export extra)."""
