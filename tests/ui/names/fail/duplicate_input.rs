// Two inputs with the same name.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        input x: [4];
        output y = Dense(1)(x);
    }
}

fn main() {}
