"""Residual encoder/decoder: shapes for the supported sizes, widths per stage, configuration errors."""
import dataclasses

import numpy as np
import pytest

from keras_vae.config import ModelConfig, RunConfig, merge
from keras_vae.errors import ConfigError
from benchmarks.flops import forward_flops
from keras_vae.models.resnet import bottleneck_shape, build_resnet_decoder, build_resnet_encoder
from keras_vae.config.presets import get_preset, preset_names, register_preset


def _config(**kw):
    base = dict(kind="vaegan", architecture="resnet", image_shape=(16, 16, 1), latent_dim=8, filters=(4,),
                num_stages=2, encoder_identity_blocks=1, disc_filters=(4, 1), disc_strides=(2, 1))
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("size,stages,channels", [(28, 2, 1), (32, 5, 3), (64, 4, 3), (128, 5, 3), (256, 6, 3)])
def test_encoder_decoder_shapes(size, stages, channels):
    config = _config(image_shape=(size, size, channels), num_stages=stages, latent_dim=16, filters=(2,),
                     encoder_identity_blocks=1 if size > 64 else 2)
    encoder, decoder = build_resnet_encoder(config), build_resnet_decoder(config)
    side = size // 2 ** stages
    assert bottleneck_shape(config) == (side, side, 2)
    assert encoder.get_layer("to_bottleneck").output.shape[1:] == (side, side, 2)
    assert [t.shape[1:] for t in encoder.outputs] == [(16,), (16,)]
    assert decoder.output.shape[1:] == (size, size, channels)
    if size <= 32:
        mean, log_var = encoder(np.zeros((2, size, size, channels), np.float32))
        assert decoder(mean).shape == (2, size, size, channels)


def test_bottleneck_has_at_least_one_channel():
    assert bottleneck_shape(_config(latent_dim=4)) == (4, 4, 1)
    assert bottleneck_shape(_config(latent_dim=64)) == (4, 4, 8)


def test_identity_block_counts_and_layer_norm():
    config = _config(encoder_identity_blocks=2, decoder_identity_blocks=1)
    encoder, decoder = build_resnet_encoder(config), build_resnet_decoder(config)
    names = [l.name for l in encoder.layers]
    assert names.count("stage0_identity1") == 1 and "stage0_identity2" not in names
    assert [l.name for l in decoder.layers].count("stage1_identity0") == 1
    assert "input_norm" in names
    assert "input_norm" not in [l.name for l in build_resnet_encoder(_config(input_layer_norm=False)).layers]


def test_decoder_output_is_linear():
    decoder = build_resnet_decoder(_config())
    last = decoder.get_layer("to_image")
    assert last.get_config()["activation"] == "linear" and last.kernel_size == (1, 1)
    last.kernel.assign(last.kernel * 1000.0)
    out = decoder(np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32))
    assert float(np.abs(out).max()) > 1.0  # not squashed into [-1, 1]


def test_channel_progressive_filters_per_stage():
    config = _config(filters=(2, 4), num_stages=2)
    encoder, decoder = build_resnet_encoder(config), build_resnet_decoder(config)
    assert encoder.get_layer("stage0_identity0").output.shape[-1] == 2
    assert encoder.get_layer("stage0_down").output.shape[-1] == 4
    assert encoder.get_layer("stage1_down").output.shape[-1] == 4
    assert decoder.get_layer("stage1_up").output.shape[-1] == 4
    assert decoder.get_layer("stage0_up").output.shape[-1] == 1  # the last block ends in the image channels
    wide = build_resnet_decoder(_config(filters=(2, 4), num_stages=2, decoder_last_block_to_image=False))
    assert wide.get_layer("stage0_up").output.shape[-1] == 2 and wide.output.shape[-1] == 1


@pytest.mark.slow
def test_progressive_preset_needs_at_least_2x_fewer_flops_than_celeba_64():
    full, progressive = get_preset("celeba-64").model, get_preset("celeba-64-progressive").model
    assert progressive.image_shape == full.image_shape and progressive.latent_dim == full.latent_dim
    cost = lambda c: forward_flops(build_resnet_encoder(c)) + forward_flops(build_resnet_decoder(c))  # noqa: E731
    assert cost(full) >= 2 * cost(progressive)


def test_image_size_the_architecture_cannot_take():
    with pytest.raises(ConfigError, match=r"height 30 cannot be halved num_stages=4 times.*multiples of 16.*"
                                          r"valid choices: num_stages 1 for 30"):
        _config(image_shape=(30, 30, 3), num_stages=4)
    with pytest.raises(ConfigError, match=r"num_stages 1 or 2 for 28"):
        _config(image_shape=(28, 28, 1), num_stages=3)
    with pytest.raises(ConfigError, match="width 20"):
        _config(image_shape=(32, 20, 1), num_stages=3)
    with pytest.raises(ConfigError, match="no stage count divides the odd size 27"):
        _config(image_shape=(27, 27, 1), num_stages=1)


def test_odd_channel_count():
    with pytest.raises(ConfigError, match=r"2 channels: choose 1 \(greyscale\) or 3 \(RGB\)"):
        _config(image_shape=(16, 16, 2))


def test_filters_must_match_stage_count():
    with pytest.raises(ConfigError, match=r"1 value \(used by every stage\) or num_stages=2"):
        _config(filters=(4, 8, 16))
    with pytest.raises(ConfigError, match="num_stages must be an integer >= 1"):
        _config(num_stages=0)


def test_inconsistent_presets_are_rejected():
    with pytest.raises(ConfigError, match="multiples of 64"):
        register_preset("bad-sizes", {"model": {"kind": "vaegan", "architecture": "resnet",
                                                "image_shape": (28, 28, 1), "num_stages": 6}})
    assert "bad-sizes" not in preset_names()
    with pytest.raises(ConfigError, match="multiples of 16"):
        merge(get_preset("celeba-64"), {"model": {"image_shape": (56, 56, 3)}})


def test_every_preset_builds_a_valid_configuration():
    for name in preset_names():
        config = get_preset(name)
        assert isinstance(config, RunConfig)
    paper = get_preset("paper-celeba-hq-256")
    assert paper.model.image_shape == (256, 256, 3) and paper.model.latent_dim == 512
    assert paper.model.stage_filters == (128,) * 6 and paper.train.batch_size == 10
    assert (paper.loss.reconstruction_weight, paper.loss.variance_weight, paper.loss.adversarial_weight) == \
        (5000.0, 0.1, 100.0)
    assert paper.loss.kl == "population" and paper.loss.population_variance == "means"
    assert (paper.train.learning_rate, paper.train.beta_1) == (1e-4, 0.5)


def _trainable(model, skip=()):
    return sum(int(np.prod(w.shape)) for layer in model.layers if layer.name not in skip
               for w in layer.trainable_weights)


@pytest.mark.slow
def test_parameter_counts_match_the_reference_at_the_paper_configuration():
    """marianorivera/How2TrainUrVAE reader.py at 256x256x3, latent 512, 128 filters, 6 stages: encoder
    5,867,584 trainable parameters (its Dense mean/log-variance heads live in a separate Sampler layer),
    decoder 4,040,556. With conv_bias=True ours must match exactly; this checks the 1x1 stride-2 conv of
    the downsampling blocks, the per-channel LayerNorm (gamma/beta of shape 256x256) and the last
    upsampling block ending in 3 channels (each changes the count)."""
    paper = dataclasses.replace(get_preset("paper-celeba-hq-256").model, conv_bias=True)
    encoder, decoder = build_resnet_encoder(paper), build_resnet_decoder(paper)
    assert _trainable(encoder, skip=("mean", "log_var")) == 5_867_584
    assert _trainable(decoder) == 4_040_556
    assert encoder.get_layer("input_norm").gamma.shape == (256, 256)
    down = encoder.get_layer("stage0_down").units[-1].conv
    assert down.kernel_size == (1, 1) and down.strides == (2, 2)
    # Our default drops the biases of the convolutions that feed a BatchNorm (blocks._conv says why):
    # encoder: stem 128 + 6 stages x (2 identity blocks x 3 convs + 4 downsampling convs) x 128 = 7,808;
    # decoder: stem 128 + 6 identity blocks x 3 x 128 + 5 upsampling blocks x 3 x 128 + last block 3 x 3
    #          = 4,361.
    default = get_preset("paper-celeba-hq-256").model
    assert _trainable(build_resnet_encoder(default), skip=("mean", "log_var")) == 5_867_584 - 7_808
    assert _trainable(build_resnet_decoder(default)) == 4_040_556 - 4_361


def test_conv_bias_round_trips_through_block_configs():
    from keras_vae.models.blocks import DownsamplingBlock

    block = DownsamplingBlock(4, use_bias=True)
    clone = DownsamplingBlock.from_config(block.get_config())
    assert clone.use_bias and all(u.conv.use_bias for u in clone.units + [clone.shortcut])
    assert not any(u.conv.use_bias for u in DownsamplingBlock(4).units)
