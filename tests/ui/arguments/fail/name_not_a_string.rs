// `name` is a string literal.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(1, name = head)(x);
    }
}

fn main() {}
