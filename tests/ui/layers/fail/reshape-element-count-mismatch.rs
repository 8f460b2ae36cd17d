// Proves: Reshape((5, 2)) of a (None, 12) tensor is an error naming both element counts.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input features: [12];
        output y = Reshape((5, 2))(features);
    }
}

fn main() {}
