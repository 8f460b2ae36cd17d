// A misspelt tensor name is reported at the name, with the nearest name in scope.
use modelc::prelude::*;

model! {
    pub struct M {
        input features: [8];
        let hidden = Dense(8, activation = relu)(featurse);
        output y = Dense(1)(hidden);
    }
}

fn main() {}
