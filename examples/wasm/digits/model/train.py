"""Trains the digits example's neural network and writes it as ONNX, with sample inputs.

The data set is scikit-learn's bundled copy of the UCI handwritten digits (8x8 images, ink
0..16), so nothing is downloaded. The network is a small multilayer perceptron (64 -> 48 ReLU
-> 10 softmax), trained with a fixed seed; the graph is written with the `onnx` package's
helpers (Gemm, Relu, Gemm, Softmax), which is all tract needs to load it in the guest.

Writes, beside this script: `digits.onnx` and, in ../samples/, one held-out image per digit as
a 32x32 PNG drawn as people draw (dark ink on white), plus `features.txt`, a held-out example as
64 numbers. Run with Python 3 and `pip install numpy scikit-learn onnx pillow`:

    python3 examples/wasm/digits/model/train.py
"""

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

here = pathlib.Path(__file__).resolve().parent
samples = here.parent / "samples"

digits = load_digits()
x = digits.data.astype(np.float32) / 16.0  # the guest scales ink the same way
y = digits.target
x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=0.25, random_state=0, stratify=y
)
net = MLPClassifier(hidden_layer_sizes=(48,), max_iter=600, random_state=0)
net.fit(x_train, y_train)
accuracy = net.score(x_test, y_test)
print(f"held-out accuracy: {accuracy:.4f} on {len(y_test)} images")
assert accuracy > 0.95, "the network should classify at least 95% of held-out digits"

(w1, w2), (b1, b2) = net.coefs_, net.intercepts_
graph = helper.make_graph(
    [
        helper.make_node("Gemm", ["pixels", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ],
    "digits-mlp",
    [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 64])],
    [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 10])],
    [
        numpy_helper.from_array(w.astype(np.float32), name)
        for name, w in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))
    ],
)
model = helper.make_model(
    graph,
    producer_name="oscar-wasm examples/wasm/digits/model/train.py",
    opset_imports=[helper.make_opsetid("", 13)],
)
model.ir_version = 8
onnx.checker.check_model(model)
(here / "digits.onnx").write_bytes(model.SerializeToString())

# One held-out image per digit that the network gets right, drawn dark on light and enlarged
# as a user's scan would be, so the guest's inversion and resizing are exercised.
samples.mkdir(exist_ok=True)
predicted = net.predict(x_test)
for digit in range(10):
    index = next(i for i in range(len(y_test)) if y_test[i] == digit and predicted[i] == digit)
    ink = (x_test[index].reshape(8, 8) * 255).astype(np.uint8)
    image = Image.fromarray(255 - ink, mode="L").resize((32, 32), Image.NEAREST)
    image.save(samples / f"{digit}.png", optimize=True)
index = next(i for i in range(len(y_test)) if predicted[i] == y_test[i] == 7)
(samples / "features.txt").write_text(
    " ".join(str(int(v * 16)) for v in x_test[index]) + "\n"
)
print(f"wrote {here / 'digits.onnx'} and {samples}")
