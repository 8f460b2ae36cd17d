// Initializers, regularizers and constraints: unknown names get a suggestion and the list, bad
// arguments are reported at the value, all at once.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [4, 4, 1];
        let h = Conv2D(2, 3, kernel_initializer = he_norml(seed = 3), kernel_constraint = radial_constraint)(x);
        let h = Dense(3, kernel_regularizer = l3(1e-4), bias_initializer = orthogonal)(Flatten()(h));
        output y = Dense(2, kernel_initializer = glorot_uniform(sed = 1), kernel_constraint = max_norm(axis = 2))(h);
    }
}

fn main() {}
