// `axis = 3` does not exist on (None, 4, 8) tensors.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [4, 8];
        input b: [4, 8];
        output y = Concatenate(axis = 3)([a, b]);
    }
}

fn main() {}
