// Proves: Reshape((5, -1)) of 12 elements is an error: -1 cannot be a whole number.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input features: [12];
        output y = Reshape((5, -1))(features);
    }
}

fn main() {}
