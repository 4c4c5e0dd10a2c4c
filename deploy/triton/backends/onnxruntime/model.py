"""CPU stand-in for Triton's ONNX Runtime backend, as a Triton "Python-based backend".

Production runs the official Triton container, whose real `onnxruntime` backend (with the TensorRT execution
accelerator on GPU) serves `platform: "onnxruntime_onnx"` models. The `tritonserver` binary in the PyPI wheel
`nvidia-pytriton` ships only the Python backend; Triton resolves the platform to the backend name
`onnxruntime` and, finding this `model.py` in `<backend-directory>/onnxruntime/`, runs it through the Python
backend. So the tests and `blinkstack up --with-triton` load the project's model repository unchanged, over the
real KServe v2 gRPC protocol, with Triton's own dynamic batcher in front.
"""

import json
import os

# The Python backend's stub embeds the base interpreter in isolated mode: PYTHONPATH is ignored, and its
# working directory comes first on sys.path. The launcher (blinkstack.local.triton_server) therefore starts Triton
# inside the Triton environment's site-packages, so numpy < 2 (the stub's ABI) and onnxruntime load from there.
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("BLINKSTACK_TRITON_ORT_THREADS", "1"))
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]
        # Triton's ONNX Runtime backend applies `reshape` between the model's shape and the configured `dims`
        # (e.g. a per-item scalar [N] declared as [N, 1]); the Python backend does not, so the stand-in does it
        # for outputs whose rank differs from the configured one. Variable dims (-1) pass through unchanged.
        self.output_dims = [[int(d) for d in tensor["dims"]] for tensor in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            results = self.session.run(self.output_names, feeds)
            tensors = [
                pb_utils.Tensor(name, value if value.ndim == len(dims) + 1 else value.reshape(value.shape[0], *dims))
                for name, value, dims in zip(self.output_names, results, self.output_dims, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
