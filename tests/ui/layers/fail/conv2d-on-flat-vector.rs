// Proves: Conv2D on a flat vector (None, 8) is an error at the Conv2D call naming `features` (None, 8) with help: `Reshape((8, 1, 1))(features)`.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input features: [8];
        output y = Conv2D(4, 3, padding = same)(features);
    }
}

fn main() {}
