// Proves: Reshape with two -1 sizes is rejected at the target_shape argument.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input features: [12];
        output y = Reshape((-1, -1))(features);
    }
}

fn main() {}
