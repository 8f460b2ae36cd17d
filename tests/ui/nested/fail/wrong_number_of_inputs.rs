// A nested model with two inputs called on one tensor.
use modelc::prelude::*;

model! {
    pub struct Pair {
        input l: [4];
        input r: [4];
        output w = Concatenate()([l, r]);
    }

    pub struct Outer {
        input x: [4];
        layer pair = Pair;
        output y = pair(x);
    }
}

fn main() {}
