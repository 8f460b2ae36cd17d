// A model with no input.
use modelc::prelude::*;

model! {
    pub struct M {
        output y = Dense(1)(x);
    }
}

fn main() {}
