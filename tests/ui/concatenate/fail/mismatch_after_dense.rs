// Shapes are inferred through layers: the message names the bound tensors and their inferred shapes.
use modelc::prelude::*;

model! {
    pub struct M {
        input x: [3, 8];
        input s: [5, 4];
        let left = Dense(16)(x);
        let right = Dense(16)(s);
        output y = Concatenate()([left, right]);
    }
}

fn main() {}
