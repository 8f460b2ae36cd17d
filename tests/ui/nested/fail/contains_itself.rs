// A model cannot be a layer of itself.
use modelc::prelude::*;

model! {
    pub struct Loop {
        input x: [4];
        layer inner = Loop;
        output y = inner(x);
    }
}

fn main() {}
