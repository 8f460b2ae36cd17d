// Proves: Permute with fewer entries than the operand has axes is an error at the layer.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 3];
        output y = Permute((2, 1))(image);
    }
}

fn main() {}
