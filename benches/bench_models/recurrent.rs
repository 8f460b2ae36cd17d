//! The recurrent benchmark model of issue #17 as a modelc graph, shared by `benches/recurrent.rs` and
//! the peers package (`peers/`, through `#[path]`), so both measure exactly the same modelc model.

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
