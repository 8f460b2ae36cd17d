// Proves: TimeDistributed around a layer of a list of tensors is an error at the wrapped layer.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [4, 2];
        output y = TimeDistributed(Concatenate())(seq);
    }
}

fn main() {}
