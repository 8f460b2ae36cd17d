// A name no layer kind is close to, called with arguments a model does not take (a model takes only
// `name` and `trainable`): an unknown layer, with the list of layers.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [8];
        output y = Swish(0.3)(x);
    }
}

fn main() {}
