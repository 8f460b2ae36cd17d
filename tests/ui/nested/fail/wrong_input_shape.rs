// A nested model called on a tensor whose shape differs from its declared input.
use modelc::prelude::*;

model! {
    pub struct Tower {
        input v: [6];
        output w = Dense(2)(v);
    }

    pub struct Outer {
        input x: [5];
        layer tower = Tower;
        output y = tower(x);
    }
}

fn main() {}
