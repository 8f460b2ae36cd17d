// Proves: binding one name to a call that returns several tensors is an error at the call, listing the results.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [5, 3];
        let y = GRU(4, return_state = true)(x);
        output out = Dense(1)(y);
    }
}

fn main() {}
