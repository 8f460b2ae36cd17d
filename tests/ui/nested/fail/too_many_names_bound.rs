// A nested model with one output bound to two names.
use modelc::prelude::*;

model! {
    pub struct Tower {
        input v: [6];
        output w = Dense(2)(v);
    }

    pub struct Outer {
        input x: [6];
        layer tower = Tower;
        let (a, b) = tower(x);
        output y = Concatenate()([a, b]);
    }
}

fn main() {}
