// A Keras activation layer modelc has as an activation function: what to write instead, not a
// missing macro (an unknown name is otherwise taken as a model of another invocation).
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        let h = Dense(4)(x);
        output y = LeakyReLU(negative_slope = 0.3)(h);
    }
}

model! {
    pub struct N {
        input x: [8];
        output y = ReLU()(x);
    }
}

fn main() {}
