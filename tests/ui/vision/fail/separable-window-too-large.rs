// Proves: a dilated 'valid' window larger than the image is an error at the separable layer, naming the
// window, the dilated window, the operand's shape, and the fixes.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 3];
        output y = SeparableConv2D(8, 3, dilation_rate = 2)(image);
    }
}

fn main() {}
