// More positional arguments than the layer takes.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(8, relu, true, 3)(x);
    }
}

fn main() {}
