"""Where the networks run: backend choice (torch eager, ONNX Runtime, OpenVINO), export-ready
graphs, inference precision, ONNX export."""
