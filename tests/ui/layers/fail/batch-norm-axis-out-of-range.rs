// Proves: a BatchNormalization axis beyond the tensor's rank is an error at the layer, naming the rank.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [4, 6];
        output y = BatchNormalization(axis = 3)(x);
    }
}

fn main() {}
