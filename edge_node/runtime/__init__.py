"""The inference runtime: onnxruntime sessions off the event loop, and pipelines from tags to predictions."""
