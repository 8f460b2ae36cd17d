// A misspelt activation gets a "did you mean" and the list of activations.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(1, activation = rleu)(x);
    }
}

fn main() {}
