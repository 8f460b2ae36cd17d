#!/usr/bin/env python3
"""Keras reference fixture for the vision layers of issue #19 (tests/vision_parity.rs).

Builds a small U-Net-like model in Keras 3 (JAX backend) that uses every layer of this round:
Rescaling, ZeroPadding1D/2D, Cropping1D/2D, UpSampling1D and UpSampling2D (nearest and bilinear), with
Conv2D, Conv1D, MaxPooling2D, Concatenate skips and two heads; and a model of grouped convolutions
(`groups` on Conv1D and Conv2D), a U-Net-like up path of Conv2DTranspose and Conv1DTranspose, a
MobileNet-like depthwise block, separable convolutions, and the two benchmark models (U-Net, MobileNet-like)
in small form. Writes
tests/fixtures/{vision_zoo,grouped_conv,conv_transpose,depthwise,separable,unet,mobilenet}.safetensors in the format of scripts/keras_reference.py (param/, input/, target/, output/, loss, grad/, adam3/), using
its `export`.

Run from the repository root:

    KERAS_BACKEND=jax /work/kvenv/bin/python scripts/keras_vision.py
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from keras import layers  # noqa: E402
from keras_reference import export  # noqa: E402


def vision_zoo():
    """A U-Net-like toy: down by pooling, up by nearest and bilinear upsampling, a padded-then-cropped skip,
    and a 1D branch through ZeroPadding1D, Cropping1D and UpSampling1D."""
    image = keras.Input(shape=(8, 8, 2), name="image")
    x = layers.Rescaling(0.5, offset=-0.25, name="rescaling")(image)
    c1 = layers.Conv2D(4, 3, padding="same", activation="tanh", name="conv2d")(x)
    p = layers.MaxPooling2D(2, name="max_pooling2d")(c1)
    c2 = layers.Conv2D(6, 3, activation="tanh", name="conv2d_1")(layers.ZeroPadding2D(name="zero_padding2d")(p))
    up_n = layers.UpSampling2D(name="up_sampling2d")(c2)
    up_b = layers.UpSampling2D((2, 2), interpolation="bilinear", name="up_sampling2d_1")(c2)
    up_b = layers.Rescaling(2.0, offset=0.1, name="rescaling_1")(up_b)
    skip = layers.ZeroPadding2D(((0, 1), (2, 1)), name="zero_padding2d_1")(c1)
    skip = layers.Cropping2D(((1, 0), (1, 2)), name="cropping2d")(skip)
    merged = layers.Concatenate(name="concatenate")([up_n, up_b, skip])
    mask = layers.Conv2D(1, 1, activation="sigmoid", name="conv2d_2")(merged)

    seq = layers.Reshape((16, 6), name="reshape")(c2)
    seq = layers.ZeroPadding1D((1, 2), name="zero_padding1d")(seq)
    seq = layers.Conv1D(3, 3, activation="tanh", name="conv1d")(seq)
    seq = layers.Cropping1D((2, 1), name="cropping1d")(seq)
    seq = layers.UpSampling1D(3, name="up_sampling1d")(seq)
    aux = layers.Dense(2, name="dense")(layers.GlobalAveragePooling1D(name="global_average_pooling1d")(seq))
    model = keras.Model([image], {"mask": mask, "aux": aux})
    return model, {"mask": keras.losses.BinaryCrossentropy(), "aux": keras.losses.MeanSquaredError()}


def grouped_conv():
    """Conv2D and Conv1D with `groups`: 'same' and strided 'valid' windows, dilation, and gelu (whose
    backward reads the pre-activation)."""
    image = keras.Input(shape=(7, 6, 4), name="image")
    x = layers.Conv2D(6, 3, padding="same", groups=2, activation="tanh", name="conv2d")(image)
    x = layers.Conv2D(4, (2, 3), strides=2, groups=2, activation="gelu", name="conv2d_1")(x)
    seq = layers.Reshape((-1, 4), name="reshape")(x)
    seq = layers.Conv1D(8, 3, padding="same", dilation_rate=2, groups=4, activation="tanh", name="conv1d")(seq)
    h = layers.GlobalAveragePooling1D(name="global_average_pooling1d")(seq)
    probs = layers.Dense(3, activation="softmax", name="dense")(h)
    return keras.Model([image], {"probs": probs}), {"probs": keras.losses.CategoricalCrossentropy()}


def conv_transpose():
    """A U-Net-like up path: Conv2DTranspose (strides 2, 'same') joined to the skip by Concatenate, a 'valid'
    one with `output_padding` and no bias, a dilated 'same' one with gelu, and Conv1DTranspose on a sequence
    ('same' with `output_padding`, then a stride larger than the kernel)."""
    image = keras.Input(shape=(8, 8, 2), name="image")
    c1 = layers.Conv2D(4, 3, padding="same", activation="tanh", name="conv2d")(image)
    p = layers.MaxPooling2D(2, name="max_pooling2d")(c1)
    c2 = layers.Conv2D(6, 3, padding="same", activation="tanh", name="conv2d_1")(p)
    u = layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="tanh", name="conv2d_transpose")(c2)
    merged = layers.Concatenate(name="concatenate")([u, c1])
    mask = layers.Conv2D(1, 1, activation="sigmoid", name="conv2d_2")(merged)
    v = layers.Conv2DTranspose(
        3, (2, 3), strides=(2, 1), output_padding=(1, 0), use_bias=False, name="conv2d_transpose_1"
    )(p)
    d = layers.Conv2DTranspose(2, 3, padding="same", dilation_rate=2, activation="gelu", name="conv2d_transpose_2")(c2)
    seq = layers.Reshape((16, 6), name="reshape")(c2)
    s = layers.Conv1DTranspose(
        3, 4, strides=2, padding="same", output_padding=1, activation="tanh", name="conv1d_transpose"
    )(seq)
    s = layers.Conv1DTranspose(2, 2, strides=3, name="conv1d_transpose_1")(s)
    feats = layers.Concatenate(name="concatenate_1")(
        [
            layers.GlobalAveragePooling1D(name="global_average_pooling1d")(s),
            layers.Flatten(name="flatten")(v),
            layers.Flatten(name="flatten_1")(d),
        ]
    )
    aux = layers.Dense(2, name="dense")(feats)
    model = keras.Model([image], {"mask": mask, "aux": aux})
    return model, {"mask": keras.losses.BinaryCrossentropy(), "aux": keras.losses.MeanSquaredError()}


MODELS = {"vision_zoo": vision_zoo, "grouped_conv": grouped_conv, "conv_transpose": conv_transpose}


def depthwise():
    """A MobileNet-like block twice (DepthwiseConv2D, BatchNormalization, relu, pointwise Conv2D 1x1; the
    second strided, with depth_multiplier 2), global pooling and Dense; and DepthwiseConv1D on a sequence
    (depth_multiplier 2, dilation, tanh, bias). As in MobileNet, the depthwise layers feeding
    BatchNormalization have no bias: its gradient is zero up to rounding, so Adam would step along the
    sign of rounding noise and the parity of the weights after three steps would test nothing."""
    image = keras.Input(shape=(8, 8, 3), name="image")
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise_conv2d")(image)
    x = layers.BatchNormalization(name="batch_normalization")(x)
    x = layers.Activation("relu", name="activation")(x)
    x = layers.Conv2D(8, 1, name="conv2d")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, use_bias=False, name="depthwise_conv2d_1")(x)
    x = layers.BatchNormalization(name="batch_normalization_1")(x)
    x = layers.Activation("relu", name="activation_1")(x)
    x = layers.Conv2D(8, 1, name="conv2d_1")(x)
    h = layers.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    probs = layers.Dense(3, activation="softmax", name="dense")(h)

    seq = keras.Input(shape=(10, 4), name="seq")
    s = layers.DepthwiseConv1D(3, depth_multiplier=2, dilation_rate=2, activation="tanh", name="depthwise_conv1d")(seq)
    aux = layers.Dense(2, name="dense_1")(layers.GlobalAveragePooling1D(name="global_average_pooling1d")(s))
    model = keras.Model([image, seq], {"probs": probs, "aux": aux})
    return model, {"probs": keras.losses.CategoricalCrossentropy(), "aux": keras.losses.MeanSquaredError()}


MODELS["depthwise"] = depthwise


def separable():
    """SeparableConv2D ('same' with depth_multiplier 2 and tanh; strided 'valid' without bias and gelu, whose
    backward reads the pre-activation; dilated) and SeparableConv1D ('same' with depth_multiplier 2, then
    strided)."""
    image = keras.Input(shape=(8, 8, 3), name="image")
    x = layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, activation="tanh", name="separable_conv2d")(image)
    y = layers.SeparableConv2D(4, (2, 3), strides=2, use_bias=False, activation="gelu", name="separable_conv2d_1")(x)
    z = layers.SeparableConv2D(3, 3, dilation_rate=2, name="separable_conv2d_2")(x)
    feats = layers.Concatenate(name="concatenate")(
        [layers.GlobalAveragePooling2D(name="global_average_pooling2d")(y), layers.Flatten(name="flatten")(z)]
    )
    probs = layers.Dense(3, activation="softmax", name="dense")(feats)

    seq = keras.Input(shape=(10, 4), name="seq")
    s = layers.SeparableConv1D(5, 3, padding="same", depth_multiplier=2, activation="tanh", name="separable_conv1d")(seq)
    s = layers.SeparableConv1D(2, 2, strides=2, name="separable_conv1d_1")(s)
    aux = layers.Dense(2, name="dense_1")(layers.GlobalAveragePooling1D(name="global_average_pooling1d")(s))
    model = keras.Model([image, seq], {"probs": probs, "aux": aux})
    return model, {"probs": keras.losses.CategoricalCrossentropy(), "aux": keras.losses.MeanSquaredError()}


def unet(size=16, width=4):
    """The U-Net of the benchmarks (BENCHMARKS.md, benches/bench_models), narrower and on a smaller image:
    two Conv2D + MaxPooling2D levels down, two Conv2DTranspose levels up joined to the skips by
    Concatenate, and a Conv2D(1, 1, sigmoid) mask."""
    image = keras.Input(shape=(size, size, 3), name="image")
    c1 = layers.Conv2D(width, 3, padding="same", activation="relu", name="conv2d")(image)
    p1 = layers.MaxPooling2D(2, name="max_pooling2d")(c1)
    c2 = layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2d_1")(p1)
    p2 = layers.MaxPooling2D(2, name="max_pooling2d_1")(c2)
    u2 = layers.Conv2DTranspose(2 * width, 3, strides=2, padding="same", activation="relu", name="conv2d_transpose")(p2)
    m2 = layers.Concatenate(name="concatenate")([u2, c2])
    u1 = layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation="relu", name="conv2d_transpose_1")(m2)
    m1 = layers.Concatenate(name="concatenate_1")([u1, c1])
    mask = layers.Conv2D(1, 1, activation="sigmoid", name="conv2d_2")(m1)
    return keras.Model([image], {"mask": mask}), {"mask": keras.losses.BinaryCrossentropy()}


def mobilenet(size=16, width=4):
    """The MobileNet-like classifier of the benchmarks, narrower and on a smaller image: four times
    DepthwiseConv2D (no bias, strides 1, 2, 1, 2), BatchNormalization and relu, then a pointwise
    Conv2D(1×1, relu) widening the channels; global average pooling and a softmax Dense."""
    image = keras.Input(shape=(size, size, 3), name="image")
    x = image
    for i, (stride, filters) in enumerate([(1, 2 * width), (2, 4 * width), (1, 4 * width), (2, 8 * width)]):
        sfx = "" if i == 0 else f"_{i}"
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"depthwise_conv2d{sfx}")(x)
        x = layers.BatchNormalization(name=f"batch_normalization{sfx}")(x)
        x = layers.Activation("relu", name=f"activation{sfx}")(x)
        x = layers.Conv2D(filters, 1, activation="relu", name=f"conv2d{sfx}")(x)
    h = layers.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    probs = layers.Dense(10, activation="softmax", name="dense")(h)
    return keras.Model([image], {"probs": probs}), {"probs": keras.losses.CategoricalCrossentropy()}


MODELS["separable"] = separable
MODELS["unet"] = unet
MODELS["mobilenet"] = mobilenet

if __name__ == "__main__":
    # `keras_vision.py [name ...]` rewrites only those fixtures; seeds stay tied to MODELS order.
    wanted = set(sys.argv[1:])
    for i, (name, build) in enumerate(MODELS.items()):
        if not wanted or name in wanted:
            export(name, build, seed=200 + i)
