// A model with an error still gets its struct and companion types (stubs): the user's code that builds and
// runs it type-checks, so the only error shown is the one in the model.
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    pub struct Broken {
        input x: [8];
        let h = Dense(16, activation = rleu)(x);
        output score = Dense(1)(h);
    }
}

fn main() {
    let mut model = Broken::new(7);
    let x = Array2::<f32>::zeros((2, 8));
    let out = model.predict(&BrokenInputs { x: x.view() }).unwrap();
    let _ = out.score;
    let mut trainer = model.compile(Adam::new(1e-3), BrokenLosses { score: Loss::MeanSquaredError }, &[]);
    let y = Array2::<f32>::zeros((2, 1));
    let _ = trainer.fit(&BrokenInputs { x: x.view() }, &BrokenTargets { score: y.view() }, &Fit::default());
    print!("{}", Broken::SUMMARY);
}
