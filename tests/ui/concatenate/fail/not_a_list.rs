// A merge called on a single tensor instead of a list.
use modelc::prelude::*;

model! {
    pub struct M {
        input a: [8];
        output y = Concatenate()(a);
    }
}

fn main() {}
