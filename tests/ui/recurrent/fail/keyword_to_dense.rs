// Proves: a layer that takes no call arguments (keywords) says so at the keyword, and how to call it.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        input h: [4];
        output y = Dense(4)(x, initial_state = [h]);
    }
}

fn main() {}
