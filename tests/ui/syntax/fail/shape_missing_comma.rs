// A shape's dimensions are separated by commas.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8 4];
        output y = Dense(1)(x);
    }
}

fn main() {}
