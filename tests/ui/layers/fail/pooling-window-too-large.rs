// Proves: MaxPooling2D with a 3x3 'valid' window on a 2x2 feature map is an error (the output would be empty).
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [2, 2, 8];
        let x = MaxPooling2D(3)(image);
        output y = GlobalMaxPooling2D()(x);
    }
}

fn main() {}
