// Proves: Dropout(1.5) is rejected at the rate argument: the rate must be in [0, 1).
use modelc::prelude::*;

model! {
    pub struct Bad {
        input features: [8];
        output y = Dropout(1.5)(features);
    }
}

fn main() {}
