// Two outputs with the same name, pointing at the first one.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(1)(x);
        output y = Dense(2)(x);
    }
}

fn main() {}
