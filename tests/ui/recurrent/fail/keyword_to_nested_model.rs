// Proves: a nested model called with a keyword tensor argument is an error at the keyword.
use modelc::prelude::*;

model! {
    pub struct Inner {
        input a: [4];
        output b = Dense(2)(a);
    }

    pub struct Outer {
        input x: [4];
        layer inner = Inner;
        output y = inner(x, initial_state = [x]);
    }
}

fn main() {}
