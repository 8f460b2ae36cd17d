// Proves: Masking on a tensor that is not a sequence (None, steps, features) is an error at the operand.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [6];
        output y = Masking()(x);
    }
}

fn main() {}
