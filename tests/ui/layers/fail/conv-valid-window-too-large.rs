// Proves: a 'valid' Conv2D whose dilated 3x3 window (5x5) is larger than the 4x4 input is an error suggesting `padding = same`.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 1];
        let x = Conv2D(2, 3, dilation_rate = 2)(image);
        output y = GlobalAveragePooling2D()(x);
    }
}

fn main() {}
