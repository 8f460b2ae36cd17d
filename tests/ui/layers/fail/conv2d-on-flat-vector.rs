// Proves: Conv2D on a flat vector (None, 8) is an error at the Conv2D call naming `features` (None, 8), and its help
// suggests a fix this 3×3 'valid' window accepts: no 8-value image fits it, so `padding = same` or Conv1D.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input features: [8];
        output y = Conv2D(4, 3)(features);
    }
}

fn main() {}
