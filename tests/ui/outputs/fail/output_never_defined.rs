// An output returning a tensor that was never defined.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        let h = Dense(8)(x);
        output y = logits;
    }
}

fn main() {}
