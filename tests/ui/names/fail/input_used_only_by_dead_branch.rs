// An input used only by a branch that reaches no output.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        input side: [4];
        let unused = Dense(2)(side);
        output y = Dense(1)(x);
    }
}

fn main() {}
