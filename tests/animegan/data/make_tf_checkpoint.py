"""Write tests/animegan/data/tf_v1_w8/ and tf_v2_w8/ with real TensorFlow, the way the AnimeGAN code saves (TF1
graph mode, tf.train.Saver, a global step), each with `tf_output.npy`: TensorFlow's own forward pass of the
generator graph (AG1 / AG2 net/generator.py, spec sections 1.3 and 2.2, built here from TF ops) on
`tf_fixture.fixture_input()`, which the tests compare with the PyTorch port loaded from the same checkpoint. Run from the project root in an environment that
has TensorFlow and torch (TensorFlow is not a project dependency):
    python -m tests.animegan.data.make_tf_checkpoint
"""

from __future__ import annotations

import shutil

import numpy as np
import tensorflow as tf

from tests.animegan.tf_fixture import FIXTURES, fixture_input, value, variables

G = "generator/G_MODEL"


class GeneratorV1Graph:
    """The v1 generator in TF ops (NHWC), reading its weights by their checkpoint names."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.w = {name: tf.constant(array) for name, array in weights.items()}

    @staticmethod
    def reflect(x, pad):  # pad = ((top, bottom), (left, right))
        return tf.pad(x, [[0, 0], list(pad[0]), list(pad[1]), [0, 0]], mode="REFLECT")

    @staticmethod
    def instance_norm(x, gamma, beta, eps):
        # ops.instance_norm / contrib instance_norm: moments over H, W per sample and channel, then affine.
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, eps)

    def conv_norm_lrelu(self, x, scope, i):
        s = "" if i == 0 else f"_{i}"
        kernel = self.w[f"{scope}/Conv{s}/weights"]
        if kernel.shape[0] == 3:
            x = self.reflect(x, ((1, 1), (1, 1)))
        x = tf.nn.conv2d(x, kernel, strides=1, padding="VALID")
        x = self.instance_norm(
            x, self.w[f"{scope}/InstanceNorm{s}/gamma"], self.w[f"{scope}/InstanceNorm{s}/beta"], 1e-5
        )
        return tf.nn.leaky_relu(x, 0.2)

    def separable(self, x, scope, i, stride=1):
        s = f"{scope}/SeparableConv2d{'' if i == 0 else f'_{i}'}"
        x = self.reflect(x, ((0, 1), (0, 1)) if stride == 2 else ((1, 1), (1, 1)))
        x = tf.nn.separable_conv2d(
            x,
            self.w[f"{s}/depthwise_weights"],
            self.w[f"{s}/pointwise_weights"],
            [1, stride, stride, 1],
            "VALID",
        )
        x = self.instance_norm(x, self.w[f"{s}/InstanceNorm/gamma"], self.w[f"{s}/InstanceNorm/beta"], 1e-6)
        return tf.nn.leaky_relu(x, 0.2)

    @staticmethod
    def resize(x, h, w):
        return tf.compat.v1.image.resize_bilinear(x, [h, w], align_corners=False, half_pixel_centers=False)

    def down_conv(self, x, scope, i):
        h, w = x.shape[1], x.shape[2]
        return self.separable(x, scope, i, stride=2) + self.separable(
            self.resize(x, h // 2, w // 2), scope, i + 1
        )

    def irb(self, x, scope):
        name = scope.rsplit("/", 1)[1]
        y = self.conv_norm_lrelu(x, scope, 0)
        y = self.reflect(y, ((1, 1), (1, 1)))
        y = tf.nn.depthwise_conv2d(y, self.w[f"{scope}/{name}/w"], [1, 1, 1, 1], "VALID")
        y = tf.nn.leaky_relu(
            self.instance_norm(y, self.w[f"{scope}/1/gamma"], self.w[f"{scope}/1/beta"], 1e-5), 0.2
        )
        y = tf.nn.conv2d(y, self.w[f"{scope}/Conv_1/weights"], strides=1, padding="VALID")
        y = self.instance_norm(y, self.w[f"{scope}/2/gamma"], self.w[f"{scope}/2/beta"], 1e-5)
        return x + y

    def __call__(self, x):
        x = self.conv_norm_lrelu(x, f"{G}/b1", 0)
        x = self.conv_norm_lrelu(x, f"{G}/b1", 1)
        b1 = self.down_conv(x, f"{G}/b1", 0)
        x = self.conv_norm_lrelu(b1, f"{G}/b2", 0)
        x = self.separable(x, f"{G}/b2", 0)
        x = self.down_conv(x, f"{G}/b2", 1)
        x = self.conv_norm_lrelu(x, f"{G}/m", 0)
        for r in range(1, 9):
            x = self.irb(x, f"{G}/m/r{r}")
        x = self.conv_norm_lrelu(x, f"{G}/m", 1)
        x = self.resize(x, 2 * x.shape[1], 2 * x.shape[2])
        x = self.separable(x, f"{G}/u2", 0)
        x = self.separable(x, f"{G}/u2", 1)
        x = self.conv_norm_lrelu(x, f"{G}/u2", 0)
        x = self.resize(x, 2 * x.shape[1], 2 * x.shape[2])
        x = self.separable(x, f"{G}/u1", 0)
        x = self.conv_norm_lrelu(x, f"{G}/u1", 0)
        x = self.conv_norm_lrelu(x, f"{G}/u1", 1)
        return tf.tanh(tf.nn.conv2d(x, self.w[f"{G}/Conv/weights"], strides=1, padding="VALID"))


class GeneratorV2Graph(GeneratorV1Graph):
    """The AnimeGANv2 generator in TF ops: Conv-Blocks with layer norm (eps 1e-12), IRBs with biased depthwise."""

    @staticmethod
    def layer_norm(x, gamma, beta):  # contrib layer_norm: over H, W, C per sample, affine per channel
        mean, var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-12)

    def cnl(self, x, scope, i, stride=1):
        s = "" if i == 0 else f"_{i}"
        kernel = self.w[f"{scope}/Conv{s}/weights"]
        k = kernel.shape[0]
        x = self.reflect(x, ((0, 1), (0, 1)) if stride == 2 else ((k // 2, k // 2), (k // 2, k // 2)))
        x = tf.nn.conv2d(x, kernel, strides=stride, padding="VALID")
        x = self.layer_norm(x, self.w[f"{scope}/LayerNorm{s}/gamma"], self.w[f"{scope}/LayerNorm{s}/beta"])
        return tf.nn.leaky_relu(x, 0.2)

    def irb(self, x, scope):
        name = scope.rsplit("/", 1)[1]
        y = self.cnl(x, scope, 0)
        y = tf.nn.depthwise_conv2d(
            self.reflect(y, ((1, 1), (1, 1))), self.w[f"{scope}/{name}/w"], [1, 1, 1, 1], "VALID"
        )
        y = tf.nn.bias_add(y, self.w[f"{scope}/{name}/bias"])
        y = tf.nn.leaky_relu(self.layer_norm(y, self.w[f"{scope}/1/gamma"], self.w[f"{scope}/1/beta"]), 0.2)
        y = tf.nn.conv2d(y, self.w[f"{scope}/Conv_1/weights"], strides=1, padding="VALID")
        y = self.layer_norm(y, self.w[f"{scope}/2/gamma"], self.w[f"{scope}/2/beta"])
        return x + y if x.shape[-1] == y.shape[-1] else y

    def __call__(self, x):
        x = self.cnl(x, f"{G}/A", 0)
        x = self.cnl(x, f"{G}/A", 1, stride=2)
        x = self.cnl(x, f"{G}/A", 2)
        x = self.cnl(x, f"{G}/B", 0, stride=2)
        x = self.cnl(x, f"{G}/B", 1)
        x = self.cnl(x, f"{G}/C", 0)
        for r in range(1, 5):
            x = self.irb(x, f"{G}/C/r{r}")
        x = self.cnl(x, f"{G}/C", 1)
        x = self.cnl(self.resize(x, 2 * x.shape[1], 2 * x.shape[2]), f"{G}/D", 0)  # Unsample
        x = self.cnl(x, f"{G}/D", 1)
        x = self.cnl(self.resize(x, 2 * x.shape[1], 2 * x.shape[2]), f"{G}/E", 0)  # Unsample
        x = self.cnl(x, f"{G}/E", 1)
        x = self.cnl(x, f"{G}/E", 2)
        return tf.tanh(tf.nn.conv2d(x, self.w[f"{G}/out_layer/Conv/weights"], strides=1, padding="VALID"))


def write(arch: str, graph_class, prefix: str, step: int | None) -> None:
    folder = FIXTURES[arch]
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    weights = {name: value(name, shape) for name, shape in variables(arch).items()}
    # The forward pass (eager) first, then the checkpoint in TF1 graph mode as the AnimeGAN code writes it.
    np.save(folder / "tf_output.npy", graph_class(weights)(tf.constant(fixture_input())).numpy())
    graph = tf.Graph()
    with graph.as_default():
        made = [tf.compat.v1.get_variable(name, initializer=array) for name, array in weights.items()]
        saver = tf.compat.v1.train.Saver(made)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(folder / prefix), global_step=step, write_meta_graph=False)
    print(f"wrote {folder.name}: {sorted(p.name for p in folder.iterdir())} ({tf.__version__})")


def main() -> None:
    write("v1", GeneratorV1Graph, "AnimeGAN.model", 60)  # AG1's training checkpoints: AnimeGAN.model-<step>
    write("v2", GeneratorV2Graph, "Hayao-64.ckpt", None)  # AG2's generator-only ones: <style>-<epoch>.ckpt


if __name__ == "__main__":
    main()
