// An input dimension must be positive.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [-3];
        output y = Dense(1)(x);
    }
}

fn main() {}
