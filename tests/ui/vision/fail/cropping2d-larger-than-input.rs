// Proves: a Cropping2D that would remove every row is an error at the layer, naming the input's shape and the most that can be cropped.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 6, 3];
        output y = Cropping2D(((1, 3), (0, 0)))(image);
    }
}

fn main() {}
