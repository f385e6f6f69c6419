"""ResNetV2 pre-activation blocks: wiring, shapes, serialization."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.models.blocks import DownsamplingBlock, IdentityBlock, PointwiseStridedConv2D, UpsamplingBlock

X = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype(np.float32)


def _convs(block):
    units = block.units + ([block.shortcut] if hasattr(block, "shortcut") else [])
    return [(type(u.conv).__name__, u.conv.kernel_size, u.conv.strides, u.conv.filters) for u in units]


def _manual(unit, x):
    """BN (inference) -> ReLU -> conv, written out."""
    return unit.conv(tf.nn.relu(unit.norm(x, training=False)))


def test_identity_block_structure_and_math():
    block = IdentityBlock(4)
    y = block(X, training=False)
    assert _convs(block) == [("Conv2D", (3, 3), (1, 1), 4), ("Conv2D", (3, 3), (1, 1), 4), ("Conv2D", (1, 1), (1, 1), 4)]
    expected = X + _manual(block.units[2], _manual(block.units[1], _manual(block.units[0], X)))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_identity_block_is_identity_when_its_last_conv_is_zero():
    block = IdentityBlock(4)
    block.build(X.shape)
    conv = block.units[2].conv
    assert conv.bias is None  # a BatchNorm or a biased 1x1 conv always follows a block
    conv.kernel.assign(tf.zeros_like(conv.kernel))
    np.testing.assert_allclose(block(X, training=True), X, atol=1e-6)


def test_identity_block_rejects_other_channel_counts():
    with pytest.raises(ValueError, match="needs 8 input channels, got 4"):
        IdentityBlock(8)(X)


def test_downsampling_block_structure_shape_and_math():
    block = DownsamplingBlock(6)
    y = block(X, training=False)
    assert y.shape == (2, 4, 4, 6)
    assert _convs(block) == [("Conv2D", (3, 3), (1, 1), 6), ("Conv2D", (3, 3), (1, 1), 6),
                             ("PointwiseStridedConv2D", (1, 1), (2, 2), 6),
                             ("PointwiseStridedConv2D", (1, 1), (2, 2), 6)]  # as reader.py: 1x1 stride 2
    residual = _manual(block.units[2], _manual(block.units[1], _manual(block.units[0], X)))
    np.testing.assert_allclose(y, _manual(block.shortcut, X) + residual, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [16, 7])
def test_pointwise_strided_conv_is_keras_strided_conv(size):
    """x[:, ::2, ::2] then a 1x1 conv is Keras' 1x1 stride-2 'same' conv (even and odd sizes), same weights."""
    x = np.random.default_rng(1).normal(size=(3, size, size, 8)).astype(np.float32)
    ours = PointwiseStridedConv2D(5, 1, strides=2, padding="same", use_bias=True)
    ref = keras.layers.Conv2D(5, 1, strides=2, padding="same", use_bias=True)
    ours.build(x.shape)
    ref.build(x.shape)
    ref.set_weights(ours.get_weights())
    y, expected = np.asarray(ours(x)), np.asarray(ref(x))
    assert y.shape == expected.shape == ours.compute_output_shape(x.shape) == (3, (size + 1) // 2, (size + 1) // 2, 5)
    # the same 8-term dot products; only the summation order may differ: 8 float32 roundings of |x||w|
    bound = 8 * np.finfo(np.float32).eps * (np.abs(x).max() * np.abs(ours.get_weights()[0]).sum(axis=(0, 1, 2)).max() + 1)
    np.testing.assert_allclose(y, expected, rtol=0, atol=bound)


def test_downsampling_block_filter_gradient_at_batch_one():
    """TF 2.21's oneDNN filter gradient of a strided 1x1 conv crashed the process (SIGSEGV) at batch 1 on
    16x16x8 inputs (a final batch of one image); the block's gradients are now finite."""
    block = DownsamplingBlock(8)
    x = tf.constant(np.random.default_rng(2).normal(size=(1, 16, 16, 8)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(block(x, training=True)))
    grads = tape.gradient(loss, block.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
    assert any(np.abs(g).max() > 0 for g in grads)


def test_upsampling_block_structure_shape_and_math():
    block = UpsamplingBlock(3)
    y = block(X, training=False)
    assert y.shape == (2, 16, 16, 3)
    assert _convs(block) == [("Conv2D", (1, 1), (1, 1), 3), ("Conv2DTranspose", (3, 3), (2, 2), 3),
                             ("Conv2DTranspose", (3, 3), (2, 2), 3)]
    residual = _manual(block.units[1], _manual(block.units[0], X))
    np.testing.assert_allclose(y, _manual(block.shortcut, X) + residual, rtol=1e-5, atol=1e-5)


def test_batch_norm_uses_batch_statistics_in_training():
    block = IdentityBlock(4)
    assert not np.allclose(block(X * 10 + 3, training=True), block(X * 10 + 3, training=False), atol=1e-3)


@pytest.mark.parametrize("cls", [IdentityBlock, DownsamplingBlock, UpsamplingBlock])
def test_blocks_round_trip_through_keras_files(cls, tmp_path):
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, cls(4, name="block")(inputs))
    assert model.get_layer("block").get_config()["filters"] == 4
    restored_layer = cls.from_config(model.get_layer("block").get_config())
    assert restored_layer.filters == 4 and restored_layer.sync_batch_norm is False
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored(X, training=False), model(X, training=False), atol=1e-6)
