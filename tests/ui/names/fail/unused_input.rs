// An input that no output depends on is almost certainly a mistake.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        input extra: [4];
        output y = Dense(1)(x);
    }
}

fn main() {}
