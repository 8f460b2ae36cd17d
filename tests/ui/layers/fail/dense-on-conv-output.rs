// Proves: Dense applied to a conv feature map (None, 8, 8, 4) is an error suggesting Flatten or GlobalAveragePooling2D.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [8, 8, 3];
        let x = Conv2D(4, 3, padding = same, activation = relu)(image);
        output y = Dense(2)(x);
    }
}

fn main() {}
