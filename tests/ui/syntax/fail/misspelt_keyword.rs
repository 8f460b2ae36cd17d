// A misspelt statement keyword gets a "did you mean".
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        lett h = Dense(8)(x);
        output y = Dense(1)(h);
    }
}

fn main() {}
