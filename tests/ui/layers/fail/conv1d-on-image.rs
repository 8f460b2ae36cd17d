// Proves: Conv1D on an image (None, 16, 16, 3) is an error that suggests Conv2D or a Reshape into a sequence.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [16, 16, 3];
        output y = Conv1D(4, 3)(image);
    }
}

fn main() {}
