// Proves: a failed Conv2D whose poisoned result reaches an output through Flatten and Dense is the only
// error: the stub types the output with Dense's rank after Flatten (a vector per sample), not the Conv2D
// operand's, so user code that treats the output as a (batch, 10) array type-checks.
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    pub struct Cascade {
        input image: [8, 8];
        let c = Conv2D(4, 3, padding = same)(image);
        output y = Dense(10, activation = softmax)(Flatten()(c));
    }
}

fn main() {
    let mut model = Cascade::new(0);
    let x = Array2::<f32>::zeros((2, 64));
    let image = x.to_shape((2, 8, 8)).unwrap();
    let out = model.predict(&CascadeInputs { image: image.view() }).unwrap();
    let probs: Array2<f32> = out.y;
    let targets = Array2::<f32>::zeros((2, 10));
    let mut trainer = model.compile(Adam::new(1e-3), CascadeLosses { y: Loss::CategoricalCrossentropy }, &[]);
    let _ = trainer.fit(&CascadeInputs { image: image.view() }, &CascadeTargets { y: targets.view() }, &Fit::default());
    assert_eq!(probs.ncols(), 10);
}
