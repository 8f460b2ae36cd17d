// A model with no output.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        let h = Dense(8)(x);
    }
}

fn main() {}
