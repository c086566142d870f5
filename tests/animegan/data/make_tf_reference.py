"""Write tests/animegan/data/tf_reference.npz: TensorFlow's own results for the TF1 legacy bilinear resize and the
AnimeGAN loss terms that do not need VGG (AG1/AG2 tools/ops.py, spec sections 1.6 and 2.4), on small deterministic
inputs, for tests/animegan/test_tf_reference.py. Needs TensorFlow (not a project dependency):
    python -m tests.animegan.data.make_tf_reference
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from tests.animegan.tf_fixture import discriminator_layers, vgg_weights

OUT = Path(__file__).resolve().parent / "tf_reference.npz"
RESIZE_SIZES = [(3, 4), (14, 18), (13, 5), (7, 9), (1, 1), (20, 3), (5, 17)]


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "resize_in": rng.uniform(-1, 1, (2, 7, 9, 3)).astype(np.float32),
        "photo": rng.uniform(-1, 1, (2, 6, 5, 3)).astype(np.float32),  # NHWC in [-1, 1]
        "fake": rng.uniform(-1, 1, (2, 6, 5, 3)).astype(np.float32),
        "features_a": rng.normal(0, 2, (2, 4, 3, 8)).astype(np.float32),  # NHWC "VGG features"
        "features_b": rng.normal(0, 2, (2, 4, 3, 8)).astype(np.float32),
        "vgg_in": rng.uniform(-1, 1, (1, 19, 13, 3)).astype(np.float32),  # odd sides: SAME pooling pads
        "d_in": rng.uniform(-1, 1, (2, 32, 24, 3)).astype(np.float32),
    }


def gram(x):  # AG1 tools/ops.py
    b, c = tf.shape(x)[0], tf.shape(x)[3]
    x = tf.reshape(x, [b, -1, c])
    return tf.matmul(tf.transpose(x, [0, 2, 1]), x) / tf.cast(tf.size(x) // b, tf.float32)


def rgb2yuv(rgb):  # AG1 tools/ops.py
    return tf.image.rgb_to_yuv((rgb + 1.0) / 2.0)


def color_loss(con, fake):  # AG1 tools/ops.py: L1 on Y, Huber on U and V
    con, fake = rgb2yuv(con), rgb2yuv(fake)
    l1 = tf.reduce_mean(tf.abs(con[..., 0] - fake[..., 0]))
    huber = tf.compat.v1.losses.huber_loss
    return l1 + huber(con[..., 1], fake[..., 1]) + huber(con[..., 2], fake[..., 2])


def total_variation_loss(x):  # AG2 tools/ops.py
    dh = x[:, :-1, ...] - x[:, 1:, ...]
    dw = x[:, :, :-1, ...] - x[:, :, 1:, ...]
    return tf.nn.l2_loss(dh) / tf.size(dh, out_type=tf.float32) + tf.nn.l2_loss(dw) / tf.size(
        dw, out_type=tf.float32
    )


def vgg19_conv4_4(rgb, weights):  # AG1 tools/vgg19.py: Caffe BGR, mean subtracted, conv4_4 before ReLU
    mean = (103.939, 116.779, 123.68)
    red, green, blue = tf.split(((rgb + 1) / 2) * 255.0, 3, axis=3)
    x = tf.concat([blue - mean[0], green - mean[1], red - mean[2]], axis=3)
    for block, convs in enumerate((2, 2, 4, 4), start=1):
        for i in range(1, convs + 1):
            w, b = weights[f"conv{block}_{i}"]
            x = tf.nn.bias_add(tf.nn.conv2d(x, w, [1, 1, 1, 1], padding="SAME"), b)
            if (block, i) != (4, 4):
                x = tf.nn.relu(x)
        if block < 4:
            x = tf.nn.max_pool(x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
    return x


def spectral_norm(w, u):  # AG1 tools/ops.py, one power iteration from u
    w_mat = tf.reshape(w, [-1, w.shape[-1]])
    v_hat = tf.nn.l2_normalize(tf.matmul(u, tf.transpose(w_mat)))
    u_hat = tf.nn.l2_normalize(tf.matmul(v_hat, w_mat))
    sigma = tf.matmul(tf.matmul(v_hat, w_mat), tf.transpose(u_hat))
    return tf.reshape(w_mat / sigma, w.shape)


def spectral_norm_u(w, u):  # the u_hat that ops.spectral_norm assigns back to its variable
    w_mat = tf.reshape(w, [-1, w.shape[-1]])
    return tf.nn.l2_normalize(tf.matmul(tf.nn.l2_normalize(tf.matmul(u, tf.transpose(w_mat))), w_mat))


def discriminator(x, layers):  # AG1/AG2 net/discriminator.py with ops.conv (zero pad, SN), IN (v1) / LN (v2)
    for layer in layers:
        if layer[0] == "pad":
            _, top, bottom, left, right = layer
            x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
        elif layer[0] == "conv":
            _, _, w, u, stride = layer
            x = tf.nn.conv2d(
                x, spectral_norm(tf.constant(w), tf.constant(u)), [1, stride, stride, 1], "VALID"
            )
        elif layer[0] == "norm":
            _, _, gamma, beta, groups, eps = layer
            axes = (
                [1, 2] if groups > 1 else [1, 2, 3]
            )  # instance norm | layer norm (contrib, params per channel)
            mean, var = tf.nn.moments(x, axes=axes, keepdims=True)
            x = tf.nn.batch_normalization(x, mean, var, beta, gamma, eps)
        else:
            x = tf.nn.leaky_relu(x, 0.2)
    return x


def main() -> None:
    data = inputs()
    out = dict(data)
    for h, w in RESIZE_SIZES:
        resized = tf.compat.v1.image.resize_bilinear(
            data["resize_in"], [h, w], align_corners=False, half_pixel_centers=False
        )
        out[f"resize_{h}x{w}"] = resized.numpy()
    out["yuv"] = tf.image.rgb_to_yuv((data["photo"] + 1) / 2).numpy()
    out["color_loss"] = color_loss(data["photo"], data["fake"]).numpy()
    out["gram_a"] = gram(data["features_a"]).numpy()
    out["style_loss"] = tf.reduce_mean(tf.abs(gram(data["features_a"]) - gram(data["features_b"]))).numpy()
    out["content_loss"] = tf.reduce_mean(tf.abs(data["features_a"] - data["features_b"])).numpy()
    out["tv_loss"] = total_variation_loss(data["fake"]).numpy()
    out["vgg_conv4_4"] = vgg19_conv4_4(data["vgg_in"], vgg_weights()).numpy()
    for arch in ("v1", "v2"):
        layers = discriminator_layers(arch)
        out[f"d_{arch}_logits"] = discriminator(data["d_in"], layers).numpy()
        out[f"d_{arch}_u1"] = spectral_norm_u(tf.constant(layers[1][2]), tf.constant(layers[1][3])).numpy()
    np.savez(OUT, **out)
    print(f"wrote {OUT.name}: {sorted(out)} ({tf.__version__})")


if __name__ == "__main__":
    main()
