//! The five BENCH.md models as modelc graphs, shared by `benches/models.rs` and the peers package
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

// BENCH M3 is the vision_meta example's own model.
#[path = "../../examples/vision_meta/model.rs"]
mod vision_meta;
pub use vision_meta::{VisionMeta, VisionMetaInputs, VisionMetaLosses, VisionMetaTargets};
