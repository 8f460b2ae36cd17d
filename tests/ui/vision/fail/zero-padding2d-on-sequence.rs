// Proves: ZeroPadding2D on a sequence points to ZeroPadding1D.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [10, 4];
        output y = ZeroPadding2D(1)(seq);
    }
}

fn main() {}
