// Proves: TimeDistributed on a tensor without steps is an error at the layer, with two fixes.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [4];
        output y = TimeDistributed(Dense(2))(x);
    }
}

fn main() {}
