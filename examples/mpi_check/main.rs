//! The checks of data-parallel training (feature `mpi`), run by `.ci/run` under `mpirun`:
//!
//! - `reference DIR` (one process, no `mpirun`): trains BENCH M2 (with a `Dropout(0.25)` on its trunk,
//!   so the ranks must draw together the dropout masks of one process) for 3 epochs with a global batch of 64
//!   and writes the weights and the history to `DIR`.
//! - `compare DIR` (under `mpirun -n N`): trains the same data-parallel, the gradients summed in one
//!   `MPI_Allreduce` after backward (`Fit { overlap_buckets: None }`), and checks that the weights
//!   hold the same bits on every rank after every epoch, and that the weights and the history equal
//!   the reference within 1e-5 (relative to the largest weight, resp. each logged value); then each rank
//!   trains alone (`Fit { data_parallel: false }`) and must reach the reference's weights bit for bit.
//! - `compare-overlap DIR` (under `mpirun -n N`, after `compare` with as many): the same checks with the
//!   gradient sum overlapping backward (`Fit { overlap_buckets }`, small buckets), and the weights
//!   compared bit by bit with `compare`'s (the blocking sum's, from another run): on 2 processes they
//!   must be the same bits (a + b either way; issue #21 traced the runs that ended 1 ulp apart to the
//!   GEMM choosing its instruction set from a timing probe, per process and run), on more the count
//!   that differ is printed (MPI associates the buckets' sums in another order than one sum's).
//! - `crash DIR` (under `mpirun -n N`, N ≥ 2): trains with a training checkpoint per epoch (weights and
//!   Adam's state); rank 1 dies (`abort`) at the start of the 4th epoch. `mpirun` must end the job,
//!   naming the rank.
//! - `resume DIR`: loads the last checkpoint `crash` left with `Trainer::load_checkpoint` (on rank 0
//!   only: `fit` broadcasts the weights, the optimizer's state, its learning rate and the callbacks'
//!   states: EarlyStopping's and ReduceLROnPlateau's) and trains on from it with `initial_epoch`,
//!   checking the weights and the learning rate on every rank after every epoch, and the plateau
//!   callback's state before every epoch.
//!
//! The data make uneven shards: 962 training rows in batches of 64 leave a last batch of 2 rows,
//! which 3 processes share as 0, 1 and 1 rows; the 130 validation rows leave a last batch of 2 too
//! (validation is sharded across the ranks as training is). `reference` and `compare` also train a
//! tagger of padded token rows whose per-step output carries the tokens' mask (the loss normalized by
//! the kept steps of the global batch) and whose MultiHeadAttention and Attention drop probabilities. Sample weights, validation data, accuracy and AUC
//! (whose state is a histogram) are on, with EarlyStopping and ReduceLROnPlateau deciding every epoch.
//!
//! Run: `cargo build --features mpi --example mpi_check`, then
//! `target/debug/examples/mpi_check reference out/mpi` and
//! `mpirun --oversubscribe -n 3 target/debug/examples/mpi_check compare out/mpi`.

use std::path::{Path, PathBuf};

use modelc::distributed::Mpi;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// BENCH M2, with a Dropout on the trunk.
    pub struct Multitask {
        input x: [64];
        let h = Dense(128, activation = relu)(x);
        let backbone = Dense(128, activation = relu)(h);
        let trunk = Dropout(0.25)(Add()([backbone, Dense(128)(x)]));
        output head_a = Dense(10, activation = softmax)(trunk);
        output head_b = Dense(1, activation = sigmoid)(trunk);
    }
}

model! {
    /// Padded token rows tagged step by step: the tokens' mask (`mask_zero`) weighs the per-step loss,
    /// normalized by the kept steps of the global batch, and both attention layers drop probabilities
    /// (their masks keyed by the row in the global batch).
    pub struct Tagger {
        input ids: [8] as i32;
        let e = Embedding(20, 8, mask_zero = true)(ids);
        let a = MultiHeadAttention(num_heads = 2, key_dim = 4, dropout = 0.3)(e, e);
        let d = Attention(dropout = 0.3)([a, e]);
        output tags = Dense(3, activation = softmax)(Add()([a, d])) as i32 target;
    }
}

const ROWS: usize = 962;
const VAL_ROWS: usize = 130;
const BATCH: usize = 64;
const EPOCHS: usize = 3;
const CRASH_EPOCHS: usize = 6;
/// Bytes per bucket of `compare-overlap`: small, so that both models' gradients go in several buckets.
const OVERLAP_BUCKET: usize = 4096;

fn main() -> std::process::ExitCode {
    // An error of one rank alone ends the whole job rather than leave the others waiting.
    Mpi::run(run)
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn run(mpi: &Mpi) -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, dir] = args.as_slice() else {
        return Err("usage: mpi_check reference|compare|compare-overlap|crash|resume DIR".into());
    };
    let dir = Path::new(dir);
    match mode.as_str() {
        "reference" if mpi.size() == 1 => reference(mpi, dir),
        "reference" => Err("`reference` runs as one process, without mpirun".into()),
        "compare" => compare(mpi, dir, None),
        "compare-overlap" => compare(mpi, dir, Some(OVERLAP_BUCKET)),
        "crash" => crash(mpi, dir),
        "resume" => resume(mpi, dir),
        _ => Err(format!("unknown mode `{mode}`").into()),
    }
}

/// Deterministic data: inputs in [-1, 1), a 10-way class and a binary flag that depend on them, and a
/// positive weight per row.
struct Data {
    x: Array2<f32>,
    class: Array2<f32>,
    flag: Array2<f32>,
    weight: Vec<f32>,
}

impl Data {
    fn new(rows: usize, seed: u64) -> Data {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let x = Array2::from_shape_fn((rows, 64), |_| 2.0 * next() - 1.0);
        let mut class = Array2::zeros((rows, 10));
        let mut flag = Array2::zeros((rows, 1));
        for (r, row) in x.outer_iter().enumerate() {
            let s: f32 = row.iter().take(8).sum();
            class[[r, ((s + 4.0) * 1.25).clamp(0.0, 9.0) as usize]] = 1.0;
            flag[[r, 0]] = f32::from(u8::from(row[8] + row[9] > 0.0));
        }
        let weight = (0..rows).map(|_| 0.5 + next()).collect();
        Data { x, class, flag, weight }
    }

    fn inputs(&self) -> MultitaskInputs<'_> {
        MultitaskInputs { x: self.x.view() }
    }

    fn targets(&self) -> MultitaskTargets<'_> {
        MultitaskTargets { head_a: self.class.view(), head_b: self.flag.view() }
    }
}

fn compile(model: &mut Multitask) -> Trainer<'_, Multitask, Adam> {
    let losses = MultitaskLosses { head_a: Loss::CategoricalCrossentropy, head_b: Loss::BinaryCrossentropy };
    model
        .compile(Adam::new(1e-3), losses, &[])
        .with_metrics(MultitaskPerOutput { head_a: vec![Metric::Accuracy], head_b: vec![Metric::Accuracy, Metric::Auc(AucCurve::Roc)] })
}

fn settings(epochs: usize) -> Fit {
    Fit {
        epochs,
        batch_size: BATCH,
        seed: 7,
        verbose: false,
        sample_weight: Some(SampleWeight::All(Data::new(ROWS, 1).weight)),
        early_stopping: Some(EarlyStopping { patience: 10, ..EarlyStopping::default() }),
        ..Fit::default()
    }
}

/// Checks after every epoch that the weights hold the same bits on every rank (a collective: every
/// rank runs it).
struct SameEverywhere<'a> {
    mpi: &'a Mpi,
    epochs_checked: usize,
}

impl<N: Network> Callback<N> for SameEverywhere<'_> {
    fn on_epoch_end(&mut self, epoch: usize, _: &LogsView<'_>, ctx: &mut Control<'_, N>) -> modelc::Result<()> {
        // The weights and the learning rate (which ReduceLROnPlateau sets from its state).
        let mut values = ctx.model().state().params.clone();
        values.push(ctx.learning_rate());
        if !self.mpi.same_on_every_rank(&values) {
            return Err(modelc::Error::Distributed {
                message: format!("the weights or the learning rate differ between ranks after epoch {}", epoch + 1),
            });
        }
        self.epochs_checked += 1;
        Ok(())
    }
}

/// Trains `model` for `fit` on the check's data, with ReduceLROnPlateau and the per-epoch check.
/// Trains `model` with `fit`; from the training checkpoint `resume_from` when given (loaded on rank 0
/// only: `fit` broadcasts the weights, the optimizer's state and its learning rate).
fn train(mpi: &Mpi, model: &mut Multitask, fit: &Fit, resume_from: Option<&Path>) -> BoxResult<History> {
    let (data, val) = (Data::new(ROWS, 1), Data::new(VAL_ROWS, 2));
    let mut trainer = compile(model);
    if let (Some(path), true) = (resume_from, mpi.is_root()) {
        // A complete file: it loads (every tensor present, the right sizes, Adam's state).
        trainer.load_checkpoint(path)?;
    }
    let mut plateau = plateau(mpi);
    let mut same = SameEverywhere { mpi, epochs_checked: 0 };
    let history = {
        let mut callbacks: [&mut dyn Callback<Multitask>; 2] = [&mut plateau, &mut same];
        trainer.fit_with_callbacks(&data.inputs(), &data.targets(), Some((&val.inputs(), &val.targets())), fit, &mut callbacks)?
    };
    if same.epochs_checked != history.epochs() {
        return Err(format!("checked {} epochs of {}", same.epochs_checked, history.epochs()).into());
    }
    Ok(history)
}

/// The learning-rate callback of every run, told after Fit's EarlyStopping (position 1 of the callbacks,
/// where the checkpoints of `crash` save its state).
fn plateau(mpi: &Mpi) -> Plateau<'_> {
    Plateau { inner: ReduceLROnPlateau { monitor: "val_loss".into(), patience: 1, factor: 0.5, ..ReduceLROnPlateau::default() }, mpi }
}

/// ReduceLROnPlateau, checking at the start of every epoch that its state is the same on every rank: a
/// resumed run restores it from the checkpoint rank 0 loaded, so `fit` must have broadcast it.
struct Plateau<'a> {
    inner: ReduceLROnPlateau,
    mpi: &'a Mpi,
}

impl<N: Network> Callback<N> for Plateau<'_> {
    fn on_train_begin(&mut self, ctx: &mut Control<'_, N>) -> modelc::Result<()> {
        Callback::<N>::on_train_begin(&mut self.inner, ctx)
    }

    fn on_epoch_begin(&mut self, epoch: usize, _: &mut Control<'_, N>) -> modelc::Result<()> {
        let p = &self.inner;
        let state = [p.wait as f32, p.cooldown_counter as f32, p.best.map_or(-1.0, |b| b as f32)];
        if self.mpi.same_on_every_rank(&state) {
            Ok(())
        } else {
            Err(modelc::Error::Distributed { message: format!("ReduceLROnPlateau's state differs between ranks at epoch {}", epoch + 1) })
        }
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &LogsView<'_>, ctx: &mut Control<'_, N>) -> modelc::Result<()> {
        Callback::<N>::on_epoch_end(&mut self.inner, epoch, logs, ctx)
    }

    fn state(&self) -> Option<CallbackState> {
        Callback::<N>::state(&self.inner)
    }

    fn restore_state(&mut self, state: &CallbackState) -> modelc::Result<()> {
        Callback::<N>::restore_state(&mut self.inner, state)
    }
}

fn reference(mpi: &Mpi, dir: &Path) -> BoxResult<()> {
    std::fs::create_dir_all(dir)?;
    let mut model = Multitask::new(3);
    let history = train(mpi, &mut model, &settings(EPOCHS), None)?;
    model.save(dir.join("reference.safetensors"))?;
    history.write_csv(dir.join("reference.csv"))?;
    println!("reference: {} epochs, loss {:?}", history.epochs(), history.get("loss").unwrap_or(&[]));
    let mut tagger = Tagger::new(5);
    let history = train_tagger(mpi, &mut tagger, None)?;
    tagger.save(dir.join("tagger.safetensors"))?;
    history.write_csv(dir.join("tagger.csv"))?;
    println!("tagger reference: loss {:?}, val_loss {:?}", history.get("loss").unwrap_or(&[]), history.get("val_loss").unwrap_or(&[]));
    Ok(())
}

/// Tagger rows: token ids 1..20 then padding (0) from a random length of 2 to 8 on, so that the shares of
/// a batch keep different numbers of steps; each step's tag depends on its token and the previous one.
fn tagger_data(rows: usize, seed: u64) -> (Array2<i32>, Array2<i32>) {
    let mut state = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 33) % n
    };
    let mut ids = Array2::zeros((rows, 8));
    let mut tags = Array2::zeros((rows, 8));
    for r in 0..rows {
        let len = 2 + next(7) as usize;
        for t in 0..len {
            ids[[r, t]] = 1 + next(19) as i32;
            let previous = if t > 0 { ids[[r, t - 1]] } else { 0 };
            tags[[r, t]] = (ids[[r, t]] + previous) % 3;
        }
    }
    (ids, tags)
}

/// Trains the tagger 3 epochs with a global batch of 16 (66 rows: the last batch of 2 rows leaves one
/// of 3 ranks an empty share), validating on 35 rows (a last batch of 3), checking after every epoch
/// that the weights are the same on every rank.
fn train_tagger(mpi: &Mpi, model: &mut Tagger, overlap: Option<usize>) -> BoxResult<History> {
    if Tagger::OUTPUT_MASKS.first().copied().flatten().is_none() {
        return Err("the tagger's output carries no mask: the check would not test the masked loss".into());
    }
    let ((ids, tags), (val_ids, val_tags)) = (tagger_data(66, 1), tagger_data(35, 2));
    let mut trainer = model.compile(Adam::new(1e-2), TaggerLosses { tags: Loss::SparseCategoricalCrossentropy }, &[Metric::Accuracy]);
    let fit = Fit { epochs: EPOCHS, batch_size: 16, seed: 5, verbose: false, overlap_buckets: overlap, ..Fit::default() };
    let mut same = SameEverywhere { mpi, epochs_checked: 0 };
    let history = trainer.fit_with_callbacks(
        &TaggerInputs { ids: ids.view() },
        &TaggerTargets { tags: tags.view() },
        Some((&TaggerInputs { ids: val_ids.view() }, &TaggerTargets { tags: val_tags.view() })),
        &fit,
        &mut [&mut same],
    )?;
    if same.epochs_checked != history.epochs() {
        return Err(format!("checked {} epochs of {}", same.epochs_checked, history.epochs()).into());
    }
    Ok(history)
}

/// `overlap`: the gradient sum overlaps backward in buckets of that many bytes; the weights are then also
/// compared with those of the blocking sum's run (`compare` before it, with as many processes), bit by bit.
fn compare(mpi: &Mpi, dir: &Path, overlap: Option<usize>) -> BoxResult<()> {
    println!("rank {}: GEMM {}", mpi.rank(), modelc::kernels::gemm::tuning_report());
    // Every rank starts from other weights: rank 0's must be broadcast.
    let mut model = Multitask::new(if mpi.is_root() { 3 } else { 100 + mpi.rank() as u64 });
    let history = train(mpi, &mut model, &Fit { overlap_buckets: overlap, ..settings(EPOCHS) }, None)?;
    let blocking = dir.join(format!("blocking-{}.safetensors", mpi.size()));
    match overlap {
        None if mpi.is_root() => model.save(&blocking)?,
        None => {}
        Some(bytes) => {
            let mut sum_after = Multitask::new(0);
            sum_after.load(&blocking)?;
            let differ = model.state().params.iter().zip(&sum_after.state().params).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            if mpi.is_root() {
                println!(
                    "{} processes, the sum overlapping backward in buckets of {bytes} bytes: {differ} weights differ from the blocking sum's in their bits",
                    mpi.size()
                );
            }
            // On 2 processes each step sums the same two values either way: the same bits, unless the
            // two runs computed the products differently (a GEMM choice measured on a core CPUID does
            // not name: `MODELC_GEMM_ISA` pins it).
            if mpi.size() == 2 && differ > 0 {
                return Err(format!(
                    "{differ} weights differ in their bits from the blocking sum's run (GEMM: {})",
                    modelc::kernels::gemm::tuning_report()
                )
                .into());
            }
        }
    }
    let mut reference = Multitask::new(0);
    reference.load(dir.join("reference.safetensors"))?;
    let (got, want) = (&model.state().params, &reference.state().params);
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let relative = worst / scale;
    let csv = std::fs::read_to_string(dir.join("reference.csv"))?;
    let history_error = compare_history(&history, &csv)?;
    if mpi.is_root() {
        println!(
            "{} processes: weights identical on every rank after each of {} epochs; max |w - w_ref| = {worst:.3e} \
             ({relative:.3e} of the largest weight); history differences at most {history_error:.3} × their tolerance",
            mpi.size(),
            history.epochs()
        );
    }
    // NaN fails too.
    if relative.is_nan() || relative > 1e-5 {
        return Err(format!("weights differ from one process' by {relative:.3e} of the largest weight (limit 1e-5)").into());
    }
    if history_error.is_nan() || history_error > 1.0 {
        return Err(format!("the history differs from one process' by {history_error:.3} times its tolerance").into());
    }
    compare_tagger(mpi, dir, overlap)?;
    if overlap.is_none() {
        compare_alone(mpi, dir)?;
    }
    Ok(())
}

/// `Fit { data_parallel: false }` under `mpirun`: every rank trains alone on all the rows, exactly as one
/// process without MPI, so its weights equal the reference's bit for bit.
fn compare_alone(mpi: &Mpi, dir: &Path) -> BoxResult<()> {
    let mut model = Multitask::new(3);
    train(mpi, &mut model, &Fit { data_parallel: false, ..settings(EPOCHS) }, None)?;
    let mut reference = Multitask::new(0);
    reference.load(dir.join("reference.safetensors"))?;
    let differ = model.state().params.iter().zip(&reference.state().params).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    if differ > 0 {
        return Err(format!("rank {}: `data_parallel: false` trained other weights than one process ({differ} differ)", mpi.rank()).into());
    }
    if mpi.is_root() {
        println!("{} processes, each training alone (`data_parallel: false`): the reference's weights, bit for bit", mpi.size());
    }
    Ok(())
}

/// The tagger trained data-parallel against one process: the masked per-step loss and the attention
/// layers' dropout must give the same weights and history.
fn compare_tagger(mpi: &Mpi, dir: &Path, overlap: Option<usize>) -> BoxResult<()> {
    let mut model = Tagger::new(if mpi.is_root() { 5 } else { 200 + mpi.rank() as u64 });
    let history = train_tagger(mpi, &mut model, overlap)?;
    let mut reference = Tagger::new(0);
    reference.load(dir.join("tagger.safetensors"))?;
    let (got, want) = (&model.state().params, &reference.state().params);
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let relative = got.iter().zip(want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    let history_error = compare_history(&history, &std::fs::read_to_string(dir.join("tagger.csv"))?)?;
    if mpi.is_root() {
        println!(
            "{} processes, masked tagger with attention dropout: weights within {relative:.3e} of one process' \
             (of the largest weight); history differences at most {history_error:.3} × their tolerance",
            mpi.size()
        );
    }
    if relative.is_nan() || relative > 1e-5 {
        return Err(format!("tagger: weights differ from one process' by {relative:.3e} of the largest weight (limit 1e-5)").into());
    }
    if history_error.is_nan() || history_error > 1.0 {
        return Err(format!("tagger: the history differs from one process' by {history_error:.3} times its tolerance").into());
    }
    Ok(())
}

/// The largest difference between `history` and the reference CSV (`epoch,<keys...>`), relative to the
/// tolerance of each key: 1e-5 relative for the losses; for the metrics, which count rows (accuracy,
/// and AUC by threshold bucket), 2e-3 absolute: weights that differ from the reference by rounding
/// (about 1e-7) may move one prediction across a threshold, which moves the value by a row's share.
/// Below 1 passes.
fn compare_history(history: &History, csv: &str) -> BoxResult<f64> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().ok_or("empty reference history")?.split(',').collect();
    let mut worst = 0.0f64;
    let mut epochs = 0;
    for (e, line) in lines.enumerate() {
        epochs += 1;
        for (key, value) in header.iter().zip(line.split(',')).skip(1) {
            let want: f64 = value.parse()?;
            let got = history.get(key).and_then(|v| v.get(e)).copied().ok_or_else(|| format!("no `{key}` at epoch {e}"))?;
            let error = if key.ends_with("loss") { (got - want).abs() / want.abs().max(1e-3) / 1e-5 } else { (got - want).abs() / 2e-3 };
            if error > 1.0 {
                eprintln!("`{key}` at epoch {}: {got} against {want} for one process", e + 1);
            }
            worst = worst.max(error);
        }
    }
    if epochs != history.epochs() {
        return Err(format!("{} epochs, the reference has {epochs}", history.epochs()).into());
    }
    Ok(worst)
}

/// Rank 1 dies at the start of this epoch (counted from 0).
const CRASH_AT: usize = 3;

struct DieOnRank1 {
    rank: usize,
}

impl Callback<Multitask> for DieOnRank1 {
    fn on_epoch_begin(&mut self, epoch: usize, _: &mut Control<'_, Multitask>) -> modelc::Result<()> {
        if self.rank == 1 && epoch == CRASH_AT {
            eprintln!("rank 1: dying on purpose at the start of epoch {}", epoch + 1);
            std::process::abort();
        }
        Ok(())
    }
}

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("ckpt-{epoch:02d}.safetensors")
}

fn crash(mpi: &Mpi, dir: &Path) -> BoxResult<()> {
    if mpi.size() < 2 {
        return Err("`crash` needs at least 2 processes".into());
    }
    if mpi.is_root() {
        std::fs::create_dir_all(dir)?;
    }
    let mut model = Multitask::new(3);
    let (data, val) = (Data::new(ROWS, 1), Data::new(VAL_ROWS, 2));
    let mut trainer = compile(&mut model);
    // The callbacks of `train` at the same positions (Fit's EarlyStopping, then the plateau one): the
    // checkpoints hold their states, and `resume` restores them.
    let mut plateau = plateau(mpi);
    let mut save = ModelCheckpoint::new(checkpoint_path(dir)).with_optimizer_state();
    let mut die = DieOnRank1 { rank: mpi.rank() };
    let mut callbacks: [&mut dyn Callback<Multitask>; 3] = [&mut plateau, &mut save, &mut die];
    trainer.fit_with_callbacks(
        &data.inputs(),
        &data.targets(),
        Some((&val.inputs(), &val.targets())),
        &settings(CRASH_EPOCHS),
        &mut callbacks,
    )?;
    Err("training finished: rank 1 did not die".into())
}

/// The last checkpoint in `dir` and its epoch (counted from 1).
fn last_checkpoint(dir: &Path) -> BoxResult<(PathBuf, usize)> {
    let mut best = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(epoch) = name.strip_prefix("ckpt-").and_then(|n| n.strip_suffix(".safetensors")).and_then(|n| n.parse::<usize>().ok()) {
            if best.as_ref().is_none_or(|(_, e)| epoch > *e) {
                best = Some((path, epoch));
            }
        }
    }
    best.ok_or_else(|| format!("no checkpoint in {}", dir.display()).into())
}

fn resume(mpi: &Mpi, dir: &Path) -> BoxResult<()> {
    let (path, epoch) = last_checkpoint(dir)?;
    if epoch != CRASH_AT {
        return Err(format!("the last checkpoint is of epoch {epoch}; rank 1 died after epoch {CRASH_AT}").into());
    }
    let mut model = Multitask::new(100 + mpi.rank() as u64);
    let fit = Fit { initial_epoch: epoch, ..settings(CRASH_EPOCHS) };
    let meta = modelc::io::read_metadata(&path)?;
    let saved = |key: &str| meta.get(key).map(String::as_str);
    if (saved("callback.0.kind"), saved("callback.1.kind")) != (Some("EarlyStopping"), Some("ReduceLROnPlateau")) {
        return Err(format!("the checkpoint lacks the callbacks' states: {meta:?}").into());
    }
    // Rank 0 loads the callbacks' states; `Plateau` checks every rank has them from the first epoch on.
    let history = train(mpi, &mut model, &fit, Some(&path))?;
    let expected: Vec<usize> = (epoch..CRASH_EPOCHS).collect();
    if history.epoch != expected {
        return Err(format!("resumed epochs {:?}, expected {expected:?}", history.epoch).into());
    }
    if mpi.is_root() {
        println!(
            "resumed from {} (epoch {epoch}) on {} processes: epochs {:?} trained, weights identical on every rank, val_loss {:.4}",
            path.display(),
            mpi.size(),
            history.epoch.iter().map(|e| e + 1).collect::<Vec<_>>(),
            history.last("val_loss").unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
