//! The five BENCH.md models, the two vision models of issue #19 (M6 U-Net, M7 MobileNet-like) and the
//! transformer encoder of issue #18 (M8) as
//! modelc graphs, shared by `benches/models.rs` and the peers package
//! (`peers/`, through `#[path]`), so every comparison measures exactly the same modelc model.

use modelc::prelude::*;

model! {
    /// BENCH M1.
    pub struct Fusion {
        input left: [8];
        input right: [4];
        let l = Dense(16, activation = relu)(left);
        let l = Dense(8, activation = relu)(l);
        let r = Dense(8, activation = relu)(right);
        let merged = Concatenate()([l, r]);
        output score = Dense(1, activation = sigmoid)(merged);
    }
}

model! {
    /// BENCH M2.
    pub struct Multitask {
        input x: [64];
        let h = Dense(128, activation = relu)(x);
        let backbone = Dense(128, activation = relu)(h);
        let trunk = Add()([backbone, Dense(128)(x)]);
        output head_a = Dense(10, activation = softmax)(trunk);
        output head_b = Dense(1, activation = sigmoid)(trunk);
    }
}

model! {
    /// BENCH M4.
    pub struct WideMlp {
        input x: [784];
        let h1 = Dense(512, activation = relu)(x);
        let h2 = Dense(512, activation = relu)(h1);
        output probs = Dense(10, activation = softmax)(Add()([h1, h2]));
    }
}

model! {
    /// BENCH M5.
    pub struct Siamese {
        input a: [128];
        input b: [128];
        layer encoder = Dense(64, activation = relu);
        let avg = Average()([encoder(a), encoder(b)]);
        output same = Dense(1, activation = sigmoid)(avg);
    }
}

model! {
    /// M6 (issue #19): a small U-Net on a 64×64 RGB image, two Conv2D + MaxPooling2D levels down, two
    /// Conv2DTranspose levels up joined to the skips by Concatenate, a 1×1 sigmoid mask. The same
    /// topology, narrower and on 16×16, is checked against Keras in tests/vision_parity.rs.
    pub struct UNet {
        input image: [64, 64, 3];
        let c1 = Conv2D(16, 3, padding = same, activation = relu)(image);
        let c2 = Conv2D(32, 3, padding = same, activation = relu)(MaxPooling2D(2)(c1));
        let u2 = Conv2DTranspose(32, 3, strides = 2, padding = same, activation = relu)(MaxPooling2D(2)(c2));
        let u1 = Conv2DTranspose(16, 3, strides = 2, padding = same, activation = relu)(Concatenate()([u2, c2]));
        output mask = Conv2D(1, 1, activation = sigmoid)(Concatenate()([u1, c1]));
    }
}

model! {
    /// M7 (issue #19): a MobileNet-like classifier on a 32×32 RGB image, four times DepthwiseConv2D (3×3,
    /// no bias, strides 1, 2, 1, 2), BatchNormalization and relu, then a pointwise Conv2D(1×1, relu);
    /// global average pooling and a 10-way softmax. Checked against Keras (narrower, 16×16) in
    /// tests/vision_parity.rs.
    pub struct MobileNet {
        input image: [32, 32, 3];
        let x = DepthwiseConv2D(3, padding = same, use_bias = false)(image);
        let x = Conv2D(16, 1, activation = relu)(Activation(relu)(BatchNormalization()(x)));
        let x = DepthwiseConv2D(3, strides = 2, padding = same, use_bias = false)(x);
        let x = Conv2D(32, 1, activation = relu)(Activation(relu)(BatchNormalization()(x)));
        let x = DepthwiseConv2D(3, padding = same, use_bias = false)(x);
        let x = Conv2D(32, 1, activation = relu)(Activation(relu)(BatchNormalization()(x)));
        let x = DepthwiseConv2D(3, strides = 2, padding = same, use_bias = false)(x);
        let x = Conv2D(64, 1, activation = relu)(Activation(relu)(BatchNormalization()(x)));
        output probs = Dense(10, activation = softmax)(GlobalAveragePooling2D()(x));
    }
}

model! {
    /// M8 (issue #18 item 5): a transformer encoder classifier on 128 token ids: Embedding(2000, 128) plus a
    /// learned position embedding, two encoder blocks (MultiHeadAttention with 4 heads of key_dim 32, Add,
    /// LayerNormalization, Dense 256 gelu, Dense 128, Add, LayerNormalization), the mean over the tokens
    /// and a 2-way softmax.
    pub struct TextEncoder {
        input tokens: [128] as i32;
        input positions: [128] as i32;
        let x = Add()([Embedding(2000, 128)(tokens), Embedding(128, 128)(positions)]);
        let a = MultiHeadAttention(num_heads = 4, key_dim = 32)(x, x);
        let x = LayerNormalization()(Add()([x, a]));
        let f = Dense(128)(Dense(256, activation = gelu)(x));
        let x = LayerNormalization()(Add()([x, f]));
        let a = MultiHeadAttention(num_heads = 4, key_dim = 32)(x, x);
        let x = LayerNormalization()(Add()([x, a]));
        let f = Dense(128)(Dense(256, activation = gelu)(x));
        let x = LayerNormalization()(Add()([x, f]));
        output probs = Dense(2, activation = softmax)(GlobalAveragePooling1D()(x));
    }
}

// BENCH M3 is the vision_meta example's own model.
#[path = "../../examples/vision_meta/model.rs"]
mod vision_meta;
pub use vision_meta::{VisionMeta, VisionMetaInputs, VisionMetaLosses, VisionMetaTargets};
