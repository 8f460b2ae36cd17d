//! The recurrent benchmark models of issue #17 as modelc graphs (R1 LSTM, R2 GRU, R3 bidirectional
//! LSTM), shared by `benches/recurrent.rs` and the peers package (`peers/`, through `#[path]`), so both
//! measure exactly the same modelc models.

use modelc::prelude::*;

model! {
    /// The benchmark model: tokens `int32[64]` → `Embedding(1000, 64)` → `LSTM(128)` →
    /// `Dense(1, sigmoid)`.
    pub struct Sentiment {
        input tokens: [64] as i32;
        let e = Embedding(1000, 64)(tokens);
        let h = LSTM(128)(e);
        output score = Dense(1, activation = sigmoid)(h);
    }
}

model! {
    /// The benchmark model with a GRU (Keras' `reset_after = true`).
    pub struct SentimentGru {
        input tokens: [64] as i32;
        let e = Embedding(1000, 64)(tokens);
        let h = GRU(128)(e);
        output score = Dense(1, activation = sigmoid)(h);
    }
}

model! {
    /// The benchmark model with a bidirectional LSTM of 64 units per direction.
    pub struct SentimentBi {
        input tokens: [64] as i32;
        let e = Embedding(1000, 64)(tokens);
        let h = Bidirectional(LSTM(64))(e);
        output score = Dense(1, activation = sigmoid)(h);
    }
}
