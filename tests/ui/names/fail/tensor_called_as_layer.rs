// A tensor is not a layer: it cannot be called.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        let h = Dense(8)(x);
        output y = h(x);
    }
}

fn main() {}
