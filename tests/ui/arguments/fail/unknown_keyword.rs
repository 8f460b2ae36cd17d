// A misspelt keyword argument gets a "did you mean" and the list of arguments.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Dense(1, activaton = relu)(x);
    }
}

fn main() {}
