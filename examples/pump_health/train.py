"""Train the example pump health model on synthetic data and export it as ONNX.

A centrifugal pump with five sensor tags (vibration, bearing temperature,
discharge pressure, flow and speed) slowly wears out; now and then it cavitates.
Two small networks learn from that:

- ``anomaly_score``: probability (0..1) that the pump is in a fault state
  (worn bearing or cavitation);
- ``remaining_life``: estimated hours until maintenance is due.

The ONNX graph is written with onnx.helper so it has exactly those two named
outputs: standardise -> MLP -> sigmoid, and standardise -> MLP -> rescale.
The repository ships the outputs (model.onnx, training.csv), so nothing trains at
test time. Re-run with::

    python examples/pump_health/train.py            # writes next to this file
    python examples/pump_health/train.py --variant 2 --out /tmp/v2   # a retrained version

Needs scikit-learn (in the project's ``dev`` extra).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.neural_network import MLPClassifier, MLPRegressor

FEATURES = ["vibration_rms", "bearing_temperature", "discharge_pressure", "flow_rate", "speed"]
LIFE_HOURS = 6000.0


def simulate(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sensor readings, fault labels and remaining life for ``rows`` random moments in pump lives."""
    wear = rng.random(rows)  # 0 new, 1 worn out
    speed = rng.normal(1475.0, 12.0, rows)
    cavitating = rng.random(rows) < 0.06
    vibration = 1.8 + 7.5 * wear**2.2 + rng.normal(0, 0.25, rows) + cavitating * rng.uniform(2.5, 5.0, rows)
    temperature = 48.0 + 24.0 * wear**1.8 + 0.004 * (speed - 1475.0) + rng.normal(0, 1.2, rows)
    pressure = (
        4.6 * (speed / 1475.0) ** 2 - 0.35 * wear + rng.normal(0, 0.06, rows) - cavitating * rng.uniform(0.8, 1.6, rows)
    )
    flow = 118.0 * (speed / 1475.0) - 6.0 * wear + rng.normal(0, 1.5, rows) - cavitating * rng.uniform(8, 20, rows)
    x = np.column_stack([vibration, temperature, pressure, flow, speed]).astype(np.float32)
    fault = ((wear > 0.78) | cavitating).astype(np.int64)
    life = np.clip((1.0 - wear) * LIFE_HOURS + rng.normal(0, 120, rows), 0, None).astype(np.float32)
    return x, fault, life


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _mlp(
    prefix: str, src: str, coefs: list[np.ndarray], biases: list[np.ndarray], out: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    nodes, inits = [], []
    current = src
    for i, (w, b) in enumerate(zip(coefs, biases, strict=True)):
        inits += [_init(f"{prefix}_w{i}", w), _init(f"{prefix}_b{i}", b)]
        mm, add = f"{prefix}_mm{i}", f"{prefix}_add{i}"
        nodes += [
            helper.make_node("MatMul", [current, f"{prefix}_w{i}"], [mm]),
            helper.make_node("Add", [mm, f"{prefix}_b{i}"], [add]),
        ]
        current = add
        if i < len(coefs) - 1:
            nodes.append(helper.make_node("Relu", [add], [f"{prefix}_relu{i}"]))
            current = f"{prefix}_relu{i}"
    nodes.append(helper.make_node("Identity", [current], [out]))
    return nodes, inits


def export(
    mean: np.ndarray,
    scale: np.ndarray,
    clf: MLPClassifier,
    reg: MLPRegressor,
    y_mean: float,
    y_scale: float,
    version: str,
) -> onnx.ModelProto:
    """The trained networks as one ONNX graph with inputs ``sensors`` and two named outputs."""
    nodes = [
        helper.make_node("Sub", ["sensors", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["z"]),
    ]
    inits = [_init("mean", mean), _init("scale", scale)]
    n, i = _mlp("fault", "z", clf.coefs_, clf.intercepts_, "fault_logit")
    nodes += n + [helper.make_node("Sigmoid", ["fault_logit"], ["anomaly_score"])]
    inits += i
    n, i = _mlp("life", "z", reg.coefs_, reg.intercepts_, "life_z")
    nodes += n + [
        helper.make_node("Mul", ["life_z", "y_scale"], ["life_scaled"]),
        helper.make_node("Add", ["life_scaled", "y_mean"], ["life_raw"]),
        helper.make_node("Max", ["life_raw", "zero"], ["remaining_life"]),
    ]
    inits += i + [_init("y_scale", [y_scale]), _init("y_mean", [y_mean]), _init("zero", [0.0])]
    graph = helper.make_graph(
        nodes,
        "pump_health",
        [helper.make_tensor_value_info("sensors", TensorProto.FLOAT, ["batch", len(FEATURES)])],
        [
            helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("remaining_life", TensorProto.FLOAT, ["batch", 1]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modelline-examples", producer_version=version
    )
    model.ir_version = 8  # readable by onnxruntime 1.14 and later
    model.doc_string = "Pump health: fault probability and remaining useful life from five sensor tags."
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent, help="folder for model.onnx and training.csv"
    )
    parser.add_argument("--variant", type=int, default=1, help="training seed / model variant (1 ships in the repo)")
    parser.add_argument("--rows", type=int, default=4000, help="training rows written to training.csv")
    args = parser.parse_args()

    rng = np.random.default_rng(1000 + args.variant)
    x, fault, life = simulate(args.rows, rng)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / scale
    hidden = (16,) if args.variant == 1 else (24, 8)
    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=600, random_state=args.variant).fit(z, fault)
    y_mean, y_scale = float(life.mean()), float(life.std())
    reg = MLPRegressor(hidden_layer_sizes=hidden, max_iter=600, random_state=args.variant).fit(
        z, (life - y_mean) / y_scale
    )
    print(f"fault accuracy {clf.score(z, fault):.3f}, remaining-life R^2 {reg.score(z, (life - y_mean) / y_scale):.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(export(mean, scale, clf, reg, y_mean, y_scale, f"{args.variant}"), str(args.out / "model.onnx"))
    with open(args.out / "training.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*FEATURES, "fault", "remaining_life"])
        for row, f, r in zip(x, fault, life, strict=True):
            writer.writerow([*(f"{v:.4f}" for v in row), int(f), f"{r:.1f}"])
    print(f"wrote {args.out / 'model.onnx'} and {args.out / 'training.csv'}")


if __name__ == "__main__":
    main()
