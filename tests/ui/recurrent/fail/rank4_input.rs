// Proves: an image given to a recurrent layer is an error at the operand, suggesting its rows as steps.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 3];
        output y = GRU(4)(image);
    }
}

fn main() {}
