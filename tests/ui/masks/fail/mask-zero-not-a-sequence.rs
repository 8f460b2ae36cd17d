// Proves: Embedding(mask_zero = true) on ids that are not a sequence (None, steps) is an error at the operand.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input grid: [3, 4] as i32;
        output y = Embedding(10, 4, mask_zero = true)(grid);
    }
}

fn main() {}
