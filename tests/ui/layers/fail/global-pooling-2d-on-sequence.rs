// Proves: GlobalAveragePooling2D on a sequence (None, 10, 4) is an error suggesting GlobalAveragePooling1D.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input seq: [10, 4];
        output y = GlobalAveragePooling2D()(seq);
    }
}

fn main() {}
