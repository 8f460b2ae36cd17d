// An output is one tensor, not a list.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [8];
        input b: [8];
        output y = [a, b];
    }
}

fn main() {}
