"""fomm's ONNX graphs with their weights stored as float16 for the browser's download.

Each float32 initializer of more than :data:`MIN_ELEMENTS` values is stored as float16 and cast
back to float32 at the graph's start, so the computation stays float32 (as onnxruntime-web's WASM
runs it) and only the weights are rounded. :func:`halve_graphs` measures what the rounding does
to frames: the probe of fomm's precision check (:func:`fomm.inference.animator.probe_frames`, the
astronaut's face and four small head motions) through both sets of graphs on ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_ELEMENTS = 64  # smaller tensors (biases of a few channels, shapes) stay as they are


def halve_weights(source: Path, target: Path) -> Path:
    """Write ``source``'s graph to ``target`` with its large float32 initializers as float16."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    casts = []
    kept = []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype != np.float32 or array.size < MIN_ELEMENTS:
            kept.append(init)
            continue
        half_name = f"{init.name}__fp16"
        kept.append(numpy_helper.from_array(array.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__cast"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return target


def _frames(paths: dict[str, Path], source: np.ndarray, driving: list[np.ndarray]) -> np.ndarray:
    """The generator's frames for the probe on ONNX Runtime: (B, 3, S, S) float32."""
    import onnxruntime as ort

    def session(name: str) -> ort.InferenceSession:
        return ort.InferenceSession(str(paths[name]), providers=["CPUExecutionProvider"])

    def tensor(frames: list[np.ndarray]) -> np.ndarray:
        return (np.stack(frames).astype(np.float32) / 255.0).transpose(0, 3, 1, 2).copy()

    src = tensor([source])
    features, small = session("source_encoder").run(["features", "small"], {"source": src})
    kp = session("kp_detector")
    names = [o.name for o in kp.get_outputs()]
    source_kp = dict(zip(names, kp.run(names, {"image": src})))
    driving_kp = dict(zip(names, kp.run(names, {"image": tensor(driving)})))
    b = len(driving)
    # relative motion from the first driving frame (fomm.models.motion.relative_motion)
    value = driving_kp["value"] - driving_kp["value"][:1] + source_kp["value"]
    feeds = {"source": src, "features": features, "small": small,
             "kp_source_value": np.repeat(source_kp["value"], b, 0), "kp_driving_value": value}
    if "jacobian" in driving_kp:
        jac = driving_kp["jacobian"] @ np.linalg.inv(driving_kp["jacobian"][:1]) \
            @ source_kp["jacobian"]
        feeds |= {"kp_source_jacobian": np.repeat(source_kp["jacobian"], b, 0),
                  "kp_driving_jacobian": jac.astype(np.float32)}
    generator = session("generator")
    wanted = {i.name for i in generator.get_inputs()}
    return generator.run(["prediction"], {k: v for k, v in feeds.items() if k in wanted})[0]


def halve_graphs(paths: dict[str, Path], out_dir: Path) -> tuple[dict[str, Path], dict]:
    """Float16-weight copies of the three graphs in ``out_dir`` and how far their frames are
    from float32's on the probe (:func:`fomm.runtime.precision.difference`: mean, p99, max)."""
    import onnx
    import torch

    from fomm.inference.animator import probe_frames
    from fomm.runtime.precision import difference

    size = onnx.load(str(paths["kp_detector"]), load_external_data=False) \
        .graph.input[0].type.tensor_type.shape.dim[-1].dim_value
    halved = {name: halve_weights(path, out_dir / path.name) for name, path in paths.items()}
    source, driving = probe_frames(int(size))
    full = _frames(paths, source, driving)
    half = _frames(halved, source, driving)
    return halved, difference(torch.from_numpy(half), torch.from_numpy(full))
