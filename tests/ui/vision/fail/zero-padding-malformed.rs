// Proves: a padding tuple of three values is neither Keras form: the error lists the forms.
use modelc::prelude::*;

model! {
    pub struct Bad {
        input image: [4, 4, 1];
        output y = ZeroPadding2D((1, 2, 3))(image);
    }
}

fn main() {}
