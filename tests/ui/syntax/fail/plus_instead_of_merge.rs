// Tensors are not added with `+`: the error points at the `+` and names the merge layers to use.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [8];
        input b: [8];
        output y = a + b;
    }
}

fn main() {}
