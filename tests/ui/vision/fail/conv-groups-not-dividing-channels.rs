// Proves: `groups` that does not divide the input's channels is an error at the conv, naming the channels
// and listing the group counts that would work.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [8, 8, 6];
        output y = Conv2D(8, 3, groups = 4)(image);
    }
}

fn main() {}
