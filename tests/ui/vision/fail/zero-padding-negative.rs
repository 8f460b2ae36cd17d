// Proves: a negative padding is an error at the offending number.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 1];
        output y = ZeroPadding2D(((1, -1), (0, 0)))(image);
    }
}

fn main() {}
