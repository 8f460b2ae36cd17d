// Proves: momentum must lie in [0, 1], reported at the argument.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [4];
        output y = BatchNormalization(momentum = 1.5)(x);
    }
}

fn main() {}
