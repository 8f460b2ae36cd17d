// Proves: a nested model instance's `name` is checked like a layer's: a `/` (which would split its weight
// names, "a/b/dense/kernel") is an error at the name.
use modelc::prelude::*;

model! {
    pub struct Tower {
        input v: [6];
        output w = Dense(2)(v);
    }

    pub struct Outer {
        input x: [6];
        layer tower = Tower(name = "a/b");
        output y = Dense(1)(tower(x));
    }
}

fn main() {}
