// A layer is called on one tensor; several tensors go in a list.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [8];
        input b: [8];
        output y = Concatenate()(a, b);
    }
}

fn main() {}
