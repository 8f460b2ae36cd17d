// Proves: a Softmax axis beyond the tensor's rank is an error at the layer.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input x: [3, 4];
        output y = Softmax(axis = 3)(x);
    }
}

fn main() {}
