// Proves: GlobalAveragePooling2D on a vector (None, 8) is an error saying the tensor is already a vector.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input features: [8];
        output y = GlobalAveragePooling2D()(features);
    }
}

fn main() {}
