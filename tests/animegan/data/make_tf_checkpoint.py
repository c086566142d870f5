"""Write tests/animegan/data/tf_v1_w8/ with real TensorFlow, the way the AnimeGAN v1 code saves (TF1 graph mode,
tf.train.Saver, global step 60). Run from the project root in an environment that has TensorFlow (it is not a
dependency): python -m tests.animegan.data.make_tf_checkpoint
"""

from __future__ import annotations

import shutil

import tensorflow as tf

from tests.animegan.tf_fixture import FIXTURE, value, variables


def main() -> None:
    tf.compat.v1.disable_eager_execution()
    shutil.rmtree(FIXTURE, ignore_errors=True)
    FIXTURE.mkdir(parents=True)
    graph = tf.Graph()
    with graph.as_default():
        made = [
            tf.compat.v1.get_variable(name, initializer=value(name, shape))
            for name, shape in variables().items()
        ]
        saver = tf.compat.v1.train.Saver(made)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(FIXTURE / "AnimeGAN.model"), global_step=60, write_meta_graph=False)
    print(f"wrote {sorted(p.name for p in FIXTURE.iterdir())} ({tf.__version__})")


if __name__ == "__main__":
    main()
