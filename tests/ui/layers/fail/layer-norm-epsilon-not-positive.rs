// Proves: a zero epsilon is rejected at the argument (it would divide by zero on a constant input).
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [4];
        output y = LayerNormalization(epsilon = 0)(x);
    }
}

fn main() {}
