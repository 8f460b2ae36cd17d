// Proves: Embedding on a computed (float) tensor is rejected: ids must come straight from an `as i32` input.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input tokens: [12] as i32;
        let h = Dense(12)(tokens);
        output y = Embedding(100, 8)(h);
    }
}

fn main() {}
