// An output trained on integer class ids: its targets field is an `i32` view without the class axis.
use modelc::ndarray::{Array2, Array3};
use modelc::prelude::*;

model! {
    pub struct Tagger {
        input x: [5, 4];
        output tags = Dense(3, activation = softmax)(x) as i32 target;
        output score = Dense(1)(x);
    }
}

#[test]
fn compiles_and_runs() {
    let x = Array3::<f32>::zeros((2, 5, 4));
    let ids = Array2::<i32>::zeros((2, 5));
    let score = Array3::<f32>::zeros((2, 5, 1));
    let _: TaggerTargets<'_> = TaggerTargets { tags: ids.view(), score: score.view() };
    let mut model = Tagger::new(0);
    let mut trainer =
        model.compile(Adam::default(), TaggerLosses { tags: Loss::SparseCategoricalCrossentropy, score: Loss::MeanSquaredError }, &[]);
    let loss = trainer.train_step(&TaggerInputs { x: x.view() }, &TaggerTargets { tags: ids.view(), score: score.view() }).unwrap();
    assert!(loss.is_finite());
}
