// Proves: a layer that takes no keyword tensor arguments says so at the keyword.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        input h: [4];
        output y = Dense(4)(x, initial_state = [h]);
    }
}

fn main() {}
