// Proves: a merge called on one tensor instead of a list is an error suggesting the list form.
use modelc::prelude::*;

model! {
    pub struct Gate {
        input a: [4];
        output y = Multiply()(a);
    }
}

fn main() {}
